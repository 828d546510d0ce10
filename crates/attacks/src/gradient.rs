//! Input gradients through candle autograd, and the per-example objectives the attacks
//! differentiate. Only the attacked input is a `Var`; the model's weights are plain
//! tensors, and nothing here goes through `softmax_last_dim` (it has no backward).

use candle_core::{DType, Tensor, Var, D};
use models::Classifier;

use crate::error::Result;

/// Logits, per-example objective and its gradient with respect to the input, from one
/// forward and one backward pass.
#[derive(Debug, Clone)]
pub struct InputGradient {
    /// Logits at the input, `N x K` (detached).
    pub logits: Tensor,
    /// The objective of each example, `N` (detached).
    pub objective: Tensor,
    /// `d objective_i / d input_i`, the input's shape. Zeros where the objective does
    /// not depend on the input at all.
    pub gradient: Tensor,
}

/// Differentiates `objective` (logits `N x K` to one value per example, `N`) with
/// respect to `images`. The per-example values are summed before the backward pass, so
/// each example's gradient row is its own objective's gradient: the models here have no
/// batch norm, so an example's logits depend on its own input only.
pub fn input_gradient<F>(
    model: &dyn Classifier,
    images: &Tensor,
    objective: F,
) -> Result<InputGradient>
where
    F: Fn(&Tensor) -> candle_core::Result<Tensor>,
{
    let var = Var::from_tensor(&images.detach())?;
    let logits = model.logits(var.as_tensor())?;
    let per_example = objective(&logits)?;
    let grads = per_example.sum_all()?.backward()?;
    let gradient = match grads.get(var.as_tensor()) {
        Some(g) => g.detach(),
        None => images.zeros_like()?,
    };
    Ok(InputGradient {
        logits: logits.detach(),
        objective: per_example.detach(),
        gradient,
    })
}

/// The gradient of every logit with respect to the input, from one forward pass and `K`
/// backward passes: logits `N x K` and gradients `N x K x (input dims after N)`.
pub fn logit_gradients(model: &dyn Classifier, images: &Tensor) -> Result<(Tensor, Tensor)> {
    let var = Var::from_tensor(&images.detach())?;
    let logits = model.logits(var.as_tensor())?;
    let k = logits.dim(1)?;
    let mut per_class = Vec::with_capacity(k);
    for c in 0..k {
        let grads = logits.narrow(1, c, 1)?.sum_all()?.backward()?;
        per_class.push(match grads.get(var.as_tensor()) {
            Some(g) => g.detach(),
            None => images.zeros_like()?,
        });
    }
    Ok((logits.detach(), Tensor::stack(&per_class, 1)?))
}

/// Cross-entropy of each example against `classes` (`N` u32): `logsumexp(z) - z_c`.
/// Differentiable (log-softmax is built from differentiable ops). Where the softmax
/// saturates, the gradient's label entry still comes out as `-sum_{j != c} p_j` to f32
/// precision (the max that log-softmax subtracts carries it), where PyTorch's float32
/// `cross_entropy` rounds `p_c - 1` to 0: see README, "FGSM against torchattacks".
pub fn cross_entropy_per_example(logits: &Tensor, classes: &Tensor) -> candle_core::Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    log_p.gather(&classes.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
}

/// The margin of each example's class `c` over the best other class:
/// `Z_c - max_{j != c} Z_j` (positive when `c` wins). The maximum runs over the other
/// logits themselves, with no floor at 0.
pub fn margin_per_example(logits: &Tensor, classes: &Tensor) -> candle_core::Result<Tensor> {
    let (n, k) = logits.dims2()?;
    let idx = classes.unsqueeze(1)?;
    let own = logits.gather(&idx, 1)?.squeeze(1)?;
    let one_hot = Tensor::zeros((n, k), logits.dtype(), logits.device())?.scatter_add(
        &idx,
        &Tensor::ones((n, 1), logits.dtype(), logits.device())?,
        1,
    )?;
    // Pushing the own class far down leaves the other logits exactly as they are.
    let others = (logits - (one_hot * 1e30)?)?.max(1)?;
    own - others
}

/// Per example: is the gradient row all zeros, or does it hold a non-finite value?
/// Either is how gradient masking shows itself.
pub fn degenerate_rows(gradient: &Tensor) -> Result<Vec<bool>> {
    let sums = gradient
        .flatten_from(1)?
        .to_dtype(DType::F64)?
        .abs()?
        .sum(1)?
        .to_vec1::<f64>()?;
    Ok(sums.iter().map(|s| *s == 0.0 || !s.is_finite()).collect())
}

/// Per example: does the gradient row hold a non-finite value?
pub(crate) fn nonfinite_rows(gradient: &Tensor) -> Result<Vec<bool>> {
    let sums = gradient
        .flatten_from(1)?
        .to_dtype(DType::F64)?
        .abs()?
        .sum(1)?
        .to_vec1::<f64>()?;
    Ok(sums.iter().map(|s| !s.is_finite()).collect())
}

/// `gradient` with its degenerate rows (see [`degenerate_rows`]) set to zero, so that a
/// NaN never reaches an iterate.
pub(crate) fn zero_rows(gradient: &Tensor, rows: &[bool]) -> Result<Tensor> {
    if !rows.iter().any(|&b| b) {
        return Ok(gradient.clone());
    }
    crate::ops::select_rows(rows, &gradient.zeros_like()?, gradient)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use models::{init_model, random::uniform, Mlp};
    use rand::{rngs::StdRng, SeedableRng};

    /// Central finite differences of the summed objective against autograd, in f64.
    fn check_against_finite_differences(
        objective: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
    ) {
        let dev = Device::Cpu;
        let (model, _) = init_model::<Mlp>(3, DType::F64, &dev).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let x = uniform(&mut rng, (2, 1, 28, 28), 0.0, 1.0, DType::F64, &dev).unwrap();
        let classes = Tensor::new(&[3u32, 8], &dev).unwrap();
        let g = input_gradient(&model, &x, |z| objective(z, &classes)).unwrap();
        let grad: Vec<f64> = g.gradient.flatten_all().unwrap().to_vec1().unwrap();
        let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
        let h = 1e-6;
        for &i in &[0usize, 17, 300, 783, 784, 1000, 1567] {
            let value = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                let xt = Tensor::from_vec(v, x.shape(), &dev).unwrap();
                let z = model.logits(&xt).unwrap();
                objective(&z, &classes)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let fd = (value(h) - value(-h)) / (2.0 * h);
            assert!(
                (fd - grad[i]).abs() <= 1e-6 * (1.0 + fd.abs()),
                "component {i}: autograd {} vs finite differences {fd}",
                grad[i]
            );
        }
        assert!(grad.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        check_against_finite_differences(cross_entropy_per_example);
    }

    /// Where the softmax saturates in f32 (1 - p_y below 6e-8 or near it), d CE / d z_y
    /// is -sum_{j != y} p_j to float32's relative precision, not 1 - p_y rounded to
    /// 0 or to a multiple of 6e-8: checked against the same formula in f64.
    #[test]
    fn cross_entropy_gradient_survives_a_saturated_softmax() {
        let dev = Device::Cpu;
        for row in [
            [25f64, 0.0, 3.0, -2.0],
            [16.0, 0.0, 1.0, -2.0],
            [9.0, 0.0, 3.0, 8.5],
        ] {
            let z = Var::new(&[row.map(|v| v as f32)], &dev).unwrap();
            let classes = Tensor::new(&[0u32], &dev).unwrap();
            let ce = cross_entropy_per_example(z.as_tensor(), &classes).unwrap();
            let grads = ce.sum_all().unwrap().backward().unwrap();
            let got: Vec<f32> = grads
                .get(z.as_tensor())
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1()
                .unwrap();
            let lse = row.iter().map(|v| (v - row[0]).exp()).sum::<f64>().ln() + row[0];
            let p: Vec<f64> = row.iter().map(|v| (v - lse).exp()).collect();
            let mut want = p.clone();
            want[0] = -p[1..].iter().sum::<f64>();
            for (j, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(g) - w).abs() <= 1e-5 * w.abs(),
                    "logits {row:?}, component {j}: {g} against {w}"
                );
            }
        }
    }

    #[test]
    fn margin_gradient_matches_finite_differences() {
        check_against_finite_differences(margin_per_example);
    }

    #[test]
    fn logit_gradients_stack_the_per_class_gradients() {
        let dev = Device::Cpu;
        let (model, _) = init_model::<Mlp>(1, DType::F64, &dev).unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        let x = uniform(&mut rng, (3, 1, 28, 28), 0.0, 1.0, DType::F64, &dev).unwrap();
        let (_, all) = logit_gradients(&model, &x).unwrap();
        assert_eq!(all.dims(), &[3, 10, 1, 28, 28]);
        let one = input_gradient(&model, &x, |z| z.narrow(1, 4, 1)?.squeeze(1)).unwrap();
        let diff = (all.narrow(1, 4, 1).unwrap().squeeze(1).unwrap() - one.gradient)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(diff < 1e-12);
    }

    #[test]
    fn margin_uses_the_best_other_logit_without_a_zero_floor() {
        let z = Tensor::new(&[[-5f32, -3.0, -4.0], [1.0, 2.0, 0.5]], &Device::Cpu).unwrap();
        let c = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        let m: Vec<f32> = margin_per_example(&z, &c).unwrap().to_vec1().unwrap();
        assert_eq!(m, vec![-2.0, 1.0]);
    }

    #[test]
    fn zero_and_nan_rows_are_degenerate() {
        let g = Tensor::new(&[[0f32, 0.0], [1.0, f32::NAN], [0.0, 1e-3]], &Device::Cpu).unwrap();
        assert_eq!(degenerate_rows(&g).unwrap(), vec![true, true, false]);
    }
}
