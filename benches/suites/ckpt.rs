//! Checkpoints of a 25M-parameter model with Adam's state (~302 MB): tempo's format
//! (save is atomic: temp file, fsync, rename), and PyTorch's `.pt` (read and write).
//! References measured alongside: writing the same number of bytes to a file with and
//! without fsync, and reading them back (what the disk and the page cache allow), and
//! the parts of a save (building the object tree; writing without fsync).
//! Files go to the scratch directory under target/.

use std::io::{Read, Write};

use criterion::{black_box, Criterion, SamplingMode, Throughput};

use tempo::ckpt::{load, read_pt, save, write_pt, write_tempo, TrainingState};

use crate::check;

pub(crate) fn bench(c: &mut Criterion) {
    let state = check(benches::big_training_state(), "checkpoint setup");
    let bytes = benches::tensor_bytes(&state) as u64;
    let dir = check(benches::scratch_dir(), "scratch dir");
    let tempo_path = dir.join("bench-25m.tempo");
    let pt_path = dir.join("bench-25m.pt");
    let n = benches::ckpt_params();

    // The files the load benchmarks read exist before any benchmark runs, so that each
    // can run alone (`cargo bench -p benches -- ckpt/load`).
    check(save(&tempo_path, &state).map_err(Into::into), "save");
    check(
        write_pt(&pt_path, &state.to_object()).map_err(Into::into),
        "write_pt",
    );

    let mut g = c.benchmark_group("ckpt");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function(format!("save/n={n}"), |b| {
        b.iter(|| check(save(&tempo_path, &state).map_err(Into::into), "save"))
    });
    g.bench_function(format!("load/n={n}"), |b| {
        b.iter(|| black_box(check(load(&tempo_path).map_err(Into::into), "load")))
    });
    g.bench_function(format!("to_object/n={n}"), |b| {
        b.iter(|| black_box(state.to_object()))
    });
    g.bench_function(format!("save_nosync/n={n}"), |b| {
        b.iter(|| {
            let r = (|| -> benches::Result<()> {
                let f = std::fs::File::create(&tempo_path)?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                write_tempo(&mut w, &state.to_object())?;
                w.flush()?;
                Ok(())
            })();
            check(r, "save_nosync")
        })
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
                TrainingState::try_from(o).map_err(Into::into),
                "try_from",
            ))
        })
    });

    // References: the same number of bytes straight to and from a file.
    let raw_path = dir.join("bench-raw.bin");
    let buf = vec![0x5au8; bytes as usize];
    let mut back = vec![0u8; bytes as usize];
    let write_raw = |sync: bool| -> benches::Result<()> {
        let mut f = std::fs::File::create(&raw_path)?;
        f.write_all(&buf)?;
        if sync {
            f.sync_all()?;
        }
        Ok(())
    };
    g.bench_function(format!("disk_write/n={n}"), |b| {
        b.iter(|| check(write_raw(false), "disk_write"))
    });
    g.bench_function(format!("disk_write_fsync/n={n}"), |b| {
        b.iter(|| check(write_raw(true), "disk_write_fsync"))
    });
    g.bench_function(format!("disk_read/n={n}"), |b| {
        b.iter(|| {
            let r = (|| -> benches::Result<()> {
                std::fs::File::open(&raw_path)?.read_exact(&mut back)?;
                Ok(())
            })();
            check(r, "disk_read")
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&raw_path);
    let _ = std::fs::remove_file(&tempo_path);
    let _ = std::fs::remove_file(&pt_path);
}
