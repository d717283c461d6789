//! Reading the `torch.save` files of the seed scenario (SEMANTICS §5).

use std::io::Read;

use tempo_ckpt::{
    module_state_from_object, optimizer_state_from_object, read_pt, scheduler_state_from_object,
    DType, Object, StateValue,
};
use tempo_param_groups::Value;
use tempo_tensor::TensorData;

use crate::torch_checkpoint;

/// The raw bytes of a zip entry, read with the `zip` crate (an independent reader).
fn zip_entry(file: &str, entry: &str) -> Vec<u8> {
    let f = std::fs::File::open(torch_checkpoint(file)).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let mut e = z.by_name(entry).unwrap();
    let mut out = Vec::new();
    e.read_to_end(&mut out).unwrap();
    out
}

fn check_close(found: f64, expected: f64, what: &str) {
    assert!(
        (found - expected).abs() <= 1e-15 * expected.abs().max(1.0),
        "{what}: {found} != {expected}"
    );
}

fn check_seed_file(dtype: &str) {
    let file = format!("seed_epoch5_{dtype}.pt");
    let root = read_pt(torch_checkpoint(&file)).unwrap();
    let keys: Vec<_> = root
        .entries()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "epoch",
            "net_x_state_dict",
            "optimizer_state_dict",
            "scheduler"
        ]
    );
    assert_eq!(root.get("epoch"), Some(&Object::Int(4)));

    // The model: names, shapes and the exact bytes of each storage.
    let net = root.get("net_x_state_dict").unwrap();
    let Object::OrderedDict { attrs, .. } = net else {
        panic!("expected an OrderedDict, got {net:?}")
    };
    assert_eq!(attrs[0].0, "_metadata");
    let model = module_state_from_object(net).unwrap();
    let expected = [
        ("fc1.weight", vec![20, 2], "0"),
        ("fc1.bias", vec![20], "1"),
        ("fc2.weight", vec![20, 20], "2"),
        ("fc2.bias", vec![20], "3"),
        ("out.weight", vec![4, 20], "4"),
        ("out.bias", vec![4], "5"),
    ];
    assert_eq!(model.len(), expected.len());
    for ((name, t), (want_name, want_shape, key)) in model.iter().zip(&expected) {
        assert_eq!(name, want_name);
        assert_eq!(t.shape(), want_shape.as_slice(), "{name}");
        let tensor = net.get(name).and_then(Object::as_tensor).unwrap();
        let want_dtype = if dtype == "float32" {
            DType::F32
        } else {
            DType::F64
        };
        assert_eq!(tensor.dtype(), want_dtype);
        let raw = zip_entry(&file, &format!("seed_epoch5_{dtype}/data/{key}"));
        assert_eq!(tensor.le_bytes().as_ref(), raw.as_slice(), "{name}");
    }

    // The optimizer: ids 0..5 with step/exp_avg/exp_avg_sq, step a 0-d tensor of 5.
    let opt = optimizer_state_from_object(root.get("optimizer_state_dict").unwrap()).unwrap();
    let ids: Vec<_> = opt.state.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5]);
    for ((_, ps), (_, want_shape, _)) in opt.state.iter().zip(&expected) {
        let keys: Vec<_> = ps.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["step", "exp_avg", "exp_avg_sq"]);
        let StateValue::Tensor(step) = &ps.entries[0].1 else {
            panic!("step is not a tensor")
        };
        assert_eq!(step.shape(), &[] as &[usize]);
        check_close(step.to_f64_vec()[0], 5.0, "step");
        assert_eq!(step.dtype().torch_name(), dtype);
        for (_, v) in &ps.entries[1..] {
            let StateValue::Tensor(t) = v else {
                panic!("moment is not a tensor")
            };
            assert_eq!(t.shape(), want_shape.as_slice());
        }
    }
    // The lr is what CyclicLR wrote after 5 steps (SEMANTICS §5 table, step 5).
    let [group] = opt.param_groups.as_slice() else {
        panic!("one group expected")
    };
    let group_keys: Vec<_> = group.keys().collect();
    assert_eq!(
        group_keys,
        [
            "lr",
            "betas",
            "eps",
            "weight_decay",
            "amsgrad",
            "maximize",
            "foreach",
            "capturable",
            "differentiable",
            "fused",
            "decoupled_weight_decay",
            "initial_lr",
            "params"
        ]
    );
    check_close(
        group.get("lr").and_then(Value::as_f64).unwrap(),
        0.025750000000000002,
        "lr",
    );
    check_close(
        group.get("initial_lr").and_then(Value::as_f64).unwrap(),
        0.001,
        "initial_lr",
    );
    assert_eq!(
        group.get("betas"),
        Some(&Value::Tuple(vec![Value::Float(0.9), Value::Float(0.999)]))
    );
    assert_eq!(group.get("weight_decay"), Some(&Value::Int(0)));
    assert_eq!(group.get("foreach"), Some(&Value::Bool(false)));
    assert_eq!(group.get("fused"), Some(&Value::None));
    assert_eq!(
        group.get("params"),
        Some(&Value::List((0..6).map(Value::Int).collect()))
    );

    // The scheduler: SEMANTICS §5 item 8's keys, after 5 steps.
    let sched = scheduler_state_from_object(root.get("scheduler").unwrap()).unwrap();
    let sched_keys: Vec<_> = sched.keys().collect();
    assert_eq!(
        sched_keys,
        [
            "max_lrs",
            "total_size",
            "step_ratio",
            "mode",
            "gamma",
            "scale_mode",
            "cycle_momentum",
            "base_lrs",
            "last_epoch",
            "_step_count",
            "_is_initial",
            "_get_lr_called_within_step",
            "_last_lr",
            "_scale_fn_custom"
        ]
    );
    assert_eq!(sched.get("mode"), Some(&Value::Str("triangular2".into())));
    assert_eq!(sched.get("last_epoch"), Some(&Value::Int(5)));
    assert_eq!(sched.get("_step_count"), Some(&Value::Int(6)));
    assert_eq!(sched.get("_scale_fn_custom"), Some(&Value::None));
    let last_lr = sched.get("_last_lr").and_then(Value::as_slice).unwrap();
    check_close(
        last_lr[0].as_f64().unwrap(),
        0.025750000000000002,
        "_last_lr",
    );
}

#[test]
fn seed_checkpoint_float32_loads() {
    check_seed_file("float32");
}

#[test]
fn seed_checkpoint_float64_loads() {
    check_seed_file("float64");
}

#[test]
fn model_tensors_convert_to_tensor_data() {
    let root = read_pt(torch_checkpoint("seed_epoch5_float64.pt")).unwrap();
    let model = module_state_from_object(root.get("net_x_state_dict").unwrap()).unwrap();
    assert!(matches!(model[0].1, TensorData::F64(_)));
}
