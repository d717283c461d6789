//! Checkpoints of a 25M-parameter model with Adam's state (~302 MB): tempo's format
//! (save is atomic: temp file, fsync, rename), and PyTorch's `.pt` (read and write).
//! Files go to the scratch directory under target/.

use criterion::{black_box, Criterion, Throughput};

use tempo::ckpt::{load, read_pt, save, write_pt, TrainingState};

use crate::check;

pub(crate) fn bench(c: &mut Criterion) {
    let state = check(benches::big_training_state(), "checkpoint setup");
    let bytes = benches::tensor_bytes(&state) as u64;
    let dir = check(benches::scratch_dir(), "scratch dir");
    let tempo_path = dir.join("bench-25m.tempo");
    let pt_path = dir.join("bench-25m.pt");
    let n = benches::ckpt_params();

    let mut g = c.benchmark_group("ckpt");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function(format!("save/n={n}"), |b| {
        b.iter(|| check(save(&tempo_path, &state).map_err(Into::into), "save"))
    });
    g.bench_function(format!("load/n={n}"), |b| {
        b.iter(|| black_box(check(load(&tempo_path).map_err(Into::into), "load")))
    });
    let object = state.to_object();
    g.bench_function(format!("pt_save/n={n}"), |b| {
        b.iter(|| check(write_pt(&pt_path, &object).map_err(Into::into), "write_pt"))
    });
    drop(object);
    g.bench_function(format!("pt_load/n={n}"), |b| {
        b.iter(|| {
            let o = check(read_pt(&pt_path).map_err(Into::into), "read_pt");
            black_box(check(
                TrainingState::from_object(&o).map_err(Into::into),
                "from_object",
            ))
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&tempo_path);
    let _ = std::fs::remove_file(&pt_path);
}
