//! The generator against values PyTorch recorded: `torch.randn` in the MLP case.

use tempo_tensor::{Float, Generator};
use tempo_testkit::{cases_dir, load_case};

/// The case's `x` was drawn by `torch.randn(32, 3, generator=torch.Generator().manual_seed(1))`.
fn recorded_randn(file: &str) -> Vec<f64> {
    let case = load_case(&cases_dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
    case.raw["x"]
        .as_array()
        .expect("x")
        .iter()
        .flat_map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_f64().expect("number"))
        })
        .collect()
}

fn max_abs_diff<T: Float>(file: &str) -> (f64, usize) {
    let want = recorded_randn(file);
    let got = Generator::new(1).normal::<T>(&[32, 3], 0.0, 1.0);
    let mut worst = 0.0f64;
    let mut exact = 0;
    for (g, w) in got.iter().zip(&want) {
        let g = Float::to_f64(*g);
        worst = worst.max((g - w).abs());
        exact += usize::from(g.to_bits() == w.to_bits());
    }
    (worst, exact)
}

#[test]
fn randn_f64_matches_torch() {
    let (worst, exact) = max_abs_diff::<f64>("training__mlp_relu_tanh_mse_float64.json");
    eprintln!("f64 randn: max |diff| {worst:e}, {exact}/96 bit-exact");
    assert_eq!(exact, 96, "max |diff| {worst:e}");
}

#[test]
fn randn_f32_matches_torch() {
    let (worst, exact) = max_abs_diff::<f32>("training__mlp_relu_tanh_mse_float32.json");
    eprintln!("f32 randn: max |diff| {worst:e}, {exact}/96 bit-exact");
    // PyTorch's f32 path uses vectorised log/cos/sin (AVX2): a few ulp apart.
    assert!(worst <= 5e-7, "max |diff| {worst:e}");
}
