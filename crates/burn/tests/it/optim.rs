//! tempo's optimizers through burn: PyTorch's conformance traces, and burn's records.

use std::collections::BTreeMap;

use burn_core::tensor::{DType, Device, Tensor, TensorCreationOptions, TensorData};
use burn_optim::{Optimizer, RecordState, StateSink, StateSource};
use serde_json::{Map, Value as Json};
use tempo_burn::{BurnError, TempoOptimizer, TempoState};
use tempo_optim::OptimizerSpec;
use tempo_testkit::{close, load_cases, Case};

/// One parameter of a case as burn sees it: a tensor of rank 1 to 4 and its state.
enum Slot {
    R1(Tensor<1>, Option<TempoState<1>>),
    R2(Tensor<2>, Option<TempoState<2>>),
    R3(Tensor<3>, Option<TempoState<3>>),
    R4(Tensor<4>, Option<TempoState<4>>),
}

/// `$body` with `$t` and `$s` bound to the slot's tensor and state, whatever its rank.
macro_rules! each_rank {
    ($slot:expr, |$t:ident, $s:ident| $body:expr) => {
        match $slot {
            Slot::R1($t, $s) => $body,
            Slot::R2($t, $s) => $body,
            Slot::R3($t, $s) => $body,
            Slot::R4($t, $s) => $body,
        }
    };
}

fn options(dtype: DType) -> TensorCreationOptions {
    TensorCreationOptions::new(Device::default()).with_dtype(dtype)
}

fn data(shape: &[usize], v: &[f64], dtype: DType) -> TensorData {
    match dtype {
        DType::F32 => TensorData::new(
            v.iter().map(|&x| x as f32).collect::<Vec<f32>>(),
            shape.to_vec(),
        ),
        _ => TensorData::new(v.to_vec(), shape.to_vec()),
    }
}

fn values(t: TensorData) -> Vec<f64> {
    match t.dtype() {
        DType::F32 => t
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        _ => t.try_to_vec::<f64>().unwrap(),
    }
}

fn round_trip<const D: usize>(s: &TempoState<D>) -> TempoState<D> {
    let mut sink = StateSink::default();
    s.state_flatten("7", &mut sink);
    let scalars: BTreeMap<_, _> = sink.scalars.into_iter().collect();
    let mut src = StateSource::new(scalars);
    for (name, t) in sink.tensors {
        src.insert_tensor(name, t);
    }
    TempoState::state_unflatten("7", &mut src, &Device::default()).unwrap()
}

impl Slot {
    fn new(shape: &[usize], v: &[f64], dtype: DType) -> Slot {
        match shape.len() {
            1 => Slot::R1(
                Tensor::from_data(data(shape, v, dtype), options(dtype)),
                None,
            ),
            2 => Slot::R2(
                Tensor::from_data(data(shape, v, dtype), options(dtype)),
                None,
            ),
            3 => Slot::R3(
                Tensor::from_data(data(shape, v, dtype), options(dtype)),
                None,
            ),
            4 => Slot::R4(
                Tensor::from_data(data(shape, v, dtype), options(dtype)),
                None,
            ),
            r => panic!("the cases hold parameters of rank 1 to 4, found {r}"),
        }
    }

    fn step(&mut self, opt: &TempoOptimizer, lr: f64, shape: &[usize], grad: &[f64], dtype: DType) {
        let g = data(shape, grad, dtype);
        each_rank!(self, |t, s| {
            let (t2, s2) = opt.step(
                lr,
                t.clone(),
                Tensor::from_data(g, options(dtype)),
                s.take(),
            );
            (*t, *s) = (t2, s2);
        })
    }

    /// The state through burn's record decomposition and back.
    fn resume(&mut self) {
        each_rank!(self, |_t, s| *s = s.as_ref().map(round_trip))
    }

    fn values(&self) -> Vec<f64> {
        each_rank!(self, |t, _s| values(t.to_data()))
    }
}

/// One TempoOptimizer per group of the case (the group's overrides merged into the
/// constructor's keyword arguments, `foreach=False` as PyTorch ran), and which group
/// each parameter is in.
fn optimizers(case: &Case) -> (Vec<TempoOptimizer>, Vec<usize>) {
    let raw = case.optimizer.as_ref().unwrap();
    let kind = raw["type"].as_str().unwrap();
    let kwargs = raw["kwargs"].as_object().cloned().unwrap_or_default();
    let groups = raw["groups"].as_array().cloned().unwrap_or_default();
    let mut opts = Vec::new();
    let mut member = vec![0; case.params.len()];
    for (g, group) in groups.iter().enumerate() {
        let mut kw: Map<String, Json> = kwargs.clone();
        kw.entry("foreach").or_insert(Json::Bool(false));
        for (k, v) in group.as_object().unwrap() {
            if k != "params" {
                kw.insert(k.clone(), v.clone());
            }
        }
        match &group["params"] {
            Json::Array(ids) => ids
                .iter()
                .for_each(|i| member[i.as_u64().unwrap() as usize] = g),
            _ => member.iter_mut().for_each(|m| *m = g),
        }
        let spec =
            OptimizerSpec::from_json(&serde_json::json!({"type": kind, "kwargs": kw}).to_string())
                .unwrap();
        opts.push(TempoOptimizer::new(&spec).unwrap());
    }
    (opts, member)
}

#[test]
fn every_optimizer_case_matches_pytorch_through_burn() {
    let mut ran = BTreeMap::<String, usize>::new();
    for case in load_cases("optim__").unwrap() {
        let dtype = if case.dtype == "float32" {
            DType::F32
        } else {
            DType::F64
        };
        let (opts, member) = optimizers(&case);
        let lrs: Vec<f64> = opts
            .iter()
            .map(|o| o.hyperparameters().get("lr").unwrap().as_f64().unwrap())
            .collect();
        let mut slots: Vec<Slot> = case
            .params
            .iter()
            .map(|p| Slot::new(&p.shape, &p.data, dtype))
            .collect();
        let grads = case.grads.as_ref().unwrap();
        assert_eq!(grads.len(), case.steps, "{}", case.name);
        for (step, step_grads) in grads.iter().enumerate() {
            if case.resume_at == Some(step) {
                slots.iter_mut().for_each(Slot::resume);
            }
            for (i, slot) in slots.iter_mut().enumerate() {
                let g = member[i];
                slot.step(
                    &opts[g],
                    lrs[g],
                    &case.params[i].shape,
                    &step_grads[i],
                    dtype,
                );
            }
            for (i, slot) in slots.iter().enumerate() {
                let want = &case.expect.params[step][i];
                let got = slot.values();
                assert_eq!(got.len(), want.len());
                for (j, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        close(*g, *w, case.tolerance),
                        "{}: step {step}, param {i}[{j}]: burn {g}, PyTorch {w}",
                        case.name
                    );
                }
            }
        }
        for o in &opts {
            assert!(o.take_error().is_none(), "{}", case.name);
        }
        *ran.entry(opts[0].name().to_string()).or_default() += 1;
    }
    for name in [
        "NAdam",
        "RAdam",
        "Adadelta",
        "Adamax",
        "ASGD",
        "Rprop",
        "Adam",
        "AdamW",
        "SGD",
        "Adagrad",
        "RMSprop",
        "Adafactor",
        "Muon",
    ] {
        assert!(
            ran.get(name).copied().unwrap_or(0) >= 2,
            "no {name} cases ran: {ran:?}"
        );
    }
}

#[test]
fn bad_specs_are_errors_naming_them() {
    let spec = |j: &str| OptimizerSpec::from_json(j).unwrap();
    let e = TempoOptimizer::new(&spec(r#"{"type": "Adam", "kwargs": {"lr": -1.0}}"#)).unwrap_err();
    assert!(matches!(e, BurnError::Optim(_)), "{e:?}");
    assert!(e.to_string().contains("lr"), "{e}");
    let e = TempoOptimizer::new(&spec(r#"{"type": "LBFGS"}"#)).unwrap_err();
    assert!(e.to_string().contains("closure"), "{e}");
    let e = TempoOptimizer::new(&spec(
        r#"{"type": "SGD", "kwargs": {"lr": 0.1}, "groups": [{"params": "all"}]}"#,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("with_group"), "{e}");
    let e = TempoOptimizer::new(&spec(r#"{"type": "Adamm"}"#)).unwrap_err();
    assert!(e.to_string().contains("Adamm"), "{e}");
    let e = TempoOptimizer::from_call("NAdam(lr=0.1, momentum_decay=-1.0)").unwrap_err();
    assert!(e.to_string().contains("momentum_decay"), "{e}");
    let e = TempoOptimizer::from_call("NAdam(lr=0.1").unwrap_err();
    assert!(matches!(e, BurnError::Sched(_)), "{e:?}");
    let ok = TempoOptimizer::from_call("Rprop(lr=0.02, etas=(0.4, 1.3))").unwrap();
    assert_eq!(ok.name(), "Rprop");
    let etas = ok.hyperparameters().get("etas").cloned().unwrap();
    assert_eq!(etas.as_slice().unwrap()[0].as_f64(), Some(0.4));
}

#[test]
fn a_state_clone_is_a_copy_and_a_bad_step_changes_nothing() {
    let opt = TempoOptimizer::from_call("Adam(lr=0.1)").unwrap();
    let param = |v: &[f64]| Tensor::<1>::from_data(data(&[2], v, DType::F64), options(DType::F64));
    let (p1, s1) = opt.step(0.1, param(&[1.0, 2.0]), param(&[0.5, -0.5]), None);
    let s1 = s1.unwrap();
    let kept = s1.clone();
    let (p2, s2) = opt.step(0.1, p1.clone(), param(&[0.5, -0.5]), Some(s1));
    let s2 = s2.unwrap();
    assert_ne!(values(p1.to_data()), values(p2.to_data()));
    // The clone is the state after one step: stepping from it again gives step 2 again.
    assert_ne!(kept, s2);
    let (p2b, s2b) = opt.step(0.1, p1, param(&[0.5, -0.5]), Some(kept));
    assert_eq!(values(p2.to_data()), values(p2b.to_data()));
    assert_eq!(s2b.unwrap(), s2);
    assert!(opt.take_error().is_none());

    // A state of another parameter (another shape): the parameter and the state stay,
    // the error is kept. (burn's ndarray backend has no f16, so the dtype refusal is
    // not reachable here.)
    let three = Tensor::<1>::from_data(
        data(&[3], &[1.0, 2.0, 3.0], DType::F64),
        options(DType::F64),
    );
    let (same, state) = opt.step(0.1, three.clone(), three.clone(), Some(s2.clone()));
    assert_eq!(state.unwrap(), s2);
    assert_eq!(values(same.to_data()), vec![1.0, 2.0, 3.0]);
    let e = opt.take_error().unwrap();
    assert!(
        e.to_string().contains("[2]") && e.to_string().contains("[3]"),
        "{e}"
    );
}
