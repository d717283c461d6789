//! Contract of the storage seam: an optimizer over a foreign [`Param`] gives the same
//! bits and the same state dict as over tempo's tensors, whether the storage hands out
//! its slots at once or in several runs; a storage's `Err` changes nothing.

use std::sync::{Arc, Mutex};

use ndarray::ArrayD;
use serde_json::json;
use tempo_optim::{build_optimizer, LockScope, OptimError, OptimizerSpec, Param, Slot, WithSlots};
use tempo_tensor::Tensor;

use crate::resume::stepped_over_vectors;

/// A parameter kept in plain vectors behind a mutex: the data, the gradient, and (for
/// the error test) whether the storage refuses to be stepped.
#[derive(Debug, Clone)]
struct VecParam(Arc<Mutex<Cell>>);

/// Data, gradient, refuses.
type Cell = (Vec<f64>, Option<Vec<f64>>, bool);

impl VecParam {
    fn new(data: Vec<f64>) -> Self {
        Self(Arc::new(Mutex::new((data, None, false))))
    }
    fn set_grad(&self, g: Option<Vec<f64>>) {
        self.0.lock().unwrap().1 = g;
    }
    fn data(&self) -> Vec<f64> {
        self.0.lock().unwrap().0.clone()
    }
}

impl Param<f64> for VecParam {
    type Scratch = ();
    fn shape(&self) -> Vec<usize> {
        vec![self.numel()]
    }
    fn numel(&self) -> usize {
        self.0.lock().unwrap().0.len()
    }
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
    fn has_grad(&self) -> bool {
        self.0.lock().unwrap().1.is_some()
    }
    fn zero_grad(&self) {
        self.set_grad(None);
    }
    /// Hands out the slots two at a time, to exercise the several-runs contract.
    fn lock(
        params: &[Self],
        scope: LockScope,
        _: &mut (),
        f: &mut WithSlots<'_, f64>,
    ) -> Result<(), OptimError> {
        let mut guards: Vec<_> = params.iter().map(|p| p.0.lock().unwrap()).collect();
        for (id, g) in guards.iter().enumerate() {
            if g.2 {
                return Err(OptimError::Storage {
                    param: id,
                    reason: "refused".into(),
                });
            }
        }
        let mut slots: Vec<Slot<'_, f64>> = guards
            .iter_mut()
            .enumerate()
            .filter(|(_, g)| g.1.is_some() || scope == LockScope::All)
            .map(|(id, g)| {
                let (data, grad, _) = &mut **g;
                Slot {
                    id,
                    data: data.as_mut_slice(),
                    grad: grad.as_deref(),
                }
            })
            .collect();
        for run in slots.chunks_mut(2) {
            f(run)?;
        }
        Ok(())
    }
}

const SIZES: [usize; 5] = [3, 1, 4, 2, 5];

fn value(k: usize, i: usize, s: usize) -> f64 {
    ((k * 7 + i * 3 + s) as f64 * 0.37).sin()
}

/// Five steps of `spec` over both storages; parameter `k` has no gradient at the
/// steps `s` with `(s + k) % 3 == 2`.
fn run_both(spec: &OptimizerSpec) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, bool) {
    let tensors: Vec<Tensor<f64>> = SIZES
        .iter()
        .enumerate()
        .map(|(k, &n)| Tensor::parameter(ArrayD::from_shape_fn(vec![n], |i| value(k, i[0], 0))))
        .collect();
    let vecs: Vec<VecParam> = SIZES
        .iter()
        .enumerate()
        .map(|(k, &n)| VecParam::new((0..n).map(|i| value(k, i, 0)).collect()))
        .collect();
    let mut a = build_optimizer(spec, &tensors).unwrap();
    let mut b = build_optimizer(spec, &vecs).unwrap();
    for s in 1..=5 {
        for (k, &n) in SIZES.iter().enumerate() {
            let g = ((s + k) % 3 != 2).then(|| (0..n).map(|i| value(k, i, s)).collect::<Vec<_>>());
            tensors[k]
                .set_grad(
                    g.clone()
                        .map(|g| ArrayD::from_shape_vec(vec![n], g).unwrap()),
                )
                .unwrap();
            vecs[k].set_grad(g);
        }
        assert_eq!(a.step().unwrap(), b.step().unwrap());
    }
    let same_state = a.state_dict() == b.state_dict();
    (
        tensors.iter().map(Tensor::to_vec).collect(),
        vecs.iter().map(VecParam::data).collect(),
        same_state,
    )
}

#[test]
fn a_foreign_storage_steps_to_the_same_bits_as_tensors() {
    for kind in &stepped_over_vectors() {
        for kwargs in [json!({}), json!({"weight_decay": 0.1, "maximize": true})] {
            let mut kwargs = kwargs;
            if *kind == "Rprop" || *kind == "ASGD" && kwargs["maximize"] == json!(true) {
                kwargs = json!({"maximize": true});
            }
            if *kind == "SGD" {
                kwargs["lr"] = json!(0.1);
                kwargs["momentum"] = json!(0.9);
            }
            let spec: OptimizerSpec = serde_json::from_value(json!({
                "type": kind,
                "kwargs": kwargs,
                "groups": [{"params": [0, 2, 4]}, {"params": [1, 3], "lr": 0.05}],
            }))
            .unwrap();
            let (t, v, same_state) = run_both(&spec);
            let bits = |x: &Vec<Vec<f64>>| -> Vec<u64> {
                x.iter().flatten().map(|f| f.to_bits()).collect()
            };
            assert_eq!(bits(&t), bits(&v), "{kind} {kwargs}");
            assert!(same_state, "{kind} {kwargs}: state dicts differ");
        }
    }
}

#[test]
fn lbfgs_steps_a_foreign_storage_like_tensors() {
    // Minimises sum((x - 1)^2 * (k + 1)) over both storages.
    let spec = OptimizerSpec::from_json(
        r#"{"type": "LBFGS", "kwargs": {"lr": 0.5, "max_iter": 5, "line_search_fn": "strong_wolfe"}}"#,
    )
    .unwrap();
    let tensors: Vec<Tensor<f64>> = SIZES
        .iter()
        .enumerate()
        .map(|(k, &n)| Tensor::parameter(ArrayD::from_shape_fn(vec![n], |i| value(k, i[0], 0))))
        .collect();
    let vecs: Vec<VecParam> = SIZES
        .iter()
        .enumerate()
        .map(|(k, &n)| VecParam::new((0..n).map(|i| value(k, i, 0)).collect()))
        .collect();
    let loss_grad = |x: &[Vec<f64>]| -> (f64, Vec<Vec<f64>>) {
        let mut loss = 0.0;
        let grads = x
            .iter()
            .enumerate()
            .map(|(k, v)| {
                v.iter()
                    .map(|&e| {
                        let w = (k + 1) as f64;
                        loss += w * (e - 1.0) * (e - 1.0);
                        2.0 * w * (e - 1.0)
                    })
                    .collect()
            })
            .collect();
        (loss, grads)
    };
    let mut a = build_optimizer(&spec, &tensors).unwrap();
    let mut b = build_optimizer(&spec, &vecs).unwrap();
    for _ in 0..4 {
        let la = a
            .step_with_closure(&mut || {
                let (l, g) = loss_grad(&tensors.iter().map(Tensor::to_vec).collect::<Vec<_>>());
                for (t, g) in tensors.iter().zip(g) {
                    t.set_grad(Some(ArrayD::from_shape_vec(vec![g.len()], g).unwrap()))?;
                }
                Ok(l)
            })
            .unwrap();
        let lb = b
            .step_with_closure(&mut || {
                let (l, g) = loss_grad(&vecs.iter().map(VecParam::data).collect::<Vec<_>>());
                for (p, g) in vecs.iter().zip(g) {
                    p.set_grad(Some(g));
                }
                Ok(l)
            })
            .unwrap();
        assert_eq!(la.map(f64::to_bits), lb.map(f64::to_bits));
    }
    for (t, v) in tensors.iter().zip(&vecs) {
        let (t, v) = (t.to_vec(), v.data());
        assert_eq!(
            t.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        // It moved towards the minimum at 1 (from values in [-1, 1]).
        assert!(t.iter().all(|&x| (x - 1.0).abs() < 0.1), "{t:?}");
    }
    assert_eq!(a.state_dict(), b.state_dict());
}

#[test]
fn a_storage_error_changes_nothing() {
    let ps: Vec<VecParam> = (0..3).map(|k| VecParam::new(vec![k as f64; 2])).collect();
    let spec = OptimizerSpec::from_json(r#"{"type": "Adam", "kwargs": {"lr": 0.1}}"#).unwrap();
    let mut opt = build_optimizer(&spec, &ps).unwrap();
    for p in &ps {
        p.set_grad(Some(vec![1.0, -1.0]));
    }
    opt.step().unwrap();
    let before: Vec<_> = ps.iter().map(VecParam::data).collect();
    let sd = opt.state_dict();
    ps[2].0.lock().unwrap().2 = true;
    assert_eq!(
        opt.step(),
        Err(OptimError::Storage {
            param: 2,
            reason: "refused".into()
        })
    );
    assert_eq!(ps.iter().map(VecParam::data).collect::<Vec<_>>(), before);
    assert_eq!(opt.state_dict(), sd);
    opt.zero_grad();
    assert!(!ps[0].has_grad());
}
