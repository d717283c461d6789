//! The burn workloads: an optimizer step over a burn module's parameters (burn's ndarray
//! backend, f32) with the same values and gradients as the tensor workloads
//! ([`crate::params_with_grads`]), stepped by tempo (through tempo-burn) or by burn's
//! own `Adam`/`AdamW`.

use burn_core as burn;

use burn::module::{Module, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use burn_optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use tempo::optim::OptimizerSpec;
use tempo_burn::TempoOptimizer;

use crate::{normal, OptKind, Result};

/// Who steps the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BurnSide {
    /// tempo's optimizer through tempo-burn (ids `burn/adam_step/...`).
    Tempo,
    /// burn's own `Adam` or `AdamW` (ids `burn_own/adam_step/...`).
    Burn,
}

/// The parameters of a workload, as a burn module.
#[derive(Module, Debug)]
struct Params {
    ps: Vec<Param<Tensor<1>>>,
}

/// A module with a fixed gradient per parameter, and an optimizer stepped once (its
/// state exists).
pub struct BurnWorkload {
    model: Option<Params>,
    grads: Vec<(ParamId, Vec<f32>)>,
    plain: Device,
    optim: ModuleOptimizer,
    lr: f64,
}

impl BurnWorkload {
    /// `kind` over parameters of `sizes`, stepped by `side`.
    pub fn new(kind: OptKind, sizes: &[usize], side: BurnSide) -> Result<Self> {
        // Parameters live on the autodiff device, as in training; gradients are plain
        // tensors, as `GradientsParams::from_grads` hands them to an optimizer.
        let plain = Device::default();
        let device = plain.clone().autodiff();
        let mut ps = Vec::new();
        let mut grads = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            // The seeds of `params_with_grads(sizes, 42)`.
            let s = 42u64.wrapping_mul(1_000_003).wrapping_add(2 * i as u64);
            let data = normal(n, s, 1.0).into_raw_vec_and_offset().0;
            let grad = normal(n, s + 1, 0.1).into_raw_vec_and_offset().0;
            let p = Param::from_tensor(Tensor::from_data(TensorData::new(data, [n]), &device));
            grads.push((p.id, grad));
            ps.push(p);
        }
        let optim = match (side, kind) {
            (BurnSide::Tempo, _) => {
                TempoOptimizer::new(&OptimizerSpec::from_json(kind.spec())?)?.init()
            }
            (BurnSide::Burn, OptKind::Adam) => AdamConfig::new().with_epsilon(1e-8).init(),
            (BurnSide::Burn, OptKind::AdamW) => AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(0.01)
                .init(),
            (BurnSide::Burn, OptKind::SGDMomentum) => {
                return Err("the burn workloads are Adam and AdamW".into())
            }
        };
        let mut w = Self {
            model: Some(Params { ps }),
            grads,
            plain,
            optim,
            lr: 1e-3,
        };
        w.step()?;
        Ok(w)
    }

    /// One optimizer step (the parameters are read back, so the step has finished).
    /// Each step gets fresh gradient tensors, as a backward pass makes them (a copy of
    /// the fixed values, on both sides).
    pub fn step(&mut self) -> Result<()> {
        let mut grads = GradientsParams::new();
        for (id, g) in &self.grads {
            let n = g.len();
            grads.register(
                *id,
                Tensor::<1>::from_data(TensorData::new(g.clone(), [n]), &self.plain),
            );
        }
        let model = self.model.take().ok_or("no model")?;
        let model = self.optim.step(self.lr, model, grads);
        if let Some(p) = model.ps.first() {
            std::hint::black_box(p.val().into_data());
        }
        self.model = Some(model);
        Ok(())
    }
}
