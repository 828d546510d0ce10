//! Shared tensor helpers: the box, the eps-balls, per-example norms and row selection.
//! Every attack uses these instead of repeating clone/clamp lines.

use candle_core::{DType, Tensor};

use crate::error::Result;

/// Clamps every component to the valid image box [0, 1].
pub fn clamp_unit(images: &Tensor) -> Result<Tensor> {
    Ok(images.clamp(0f64, 1f64)?)
}

/// Projects a perturbation onto the Linf ball of radius `eps` (componentwise clamp).
pub fn project_linf(delta: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(delta.clamp(-eps, eps)?)
}

/// Projects each example's perturbation onto the L2 ball of radius `eps`: rows longer
/// than `eps` are rescaled to length `eps`, shorter ones are left alone.
pub fn project_l2(delta: &Tensor, eps: f64) -> Result<Tensor> {
    let norms = per_example_l2(delta)?;
    // factor = eps / max(||d||, eps): 1 inside the ball; the floor keeps eps = 0 finite.
    let factor = (norms.maximum(eps)?.maximum(1e-12)?.recip()? * eps)?;
    Ok(delta.broadcast_mul(&per_example(&factor, delta.rank())?)?)
}

/// The L2 norm of each example (row of dimension 0): an `N` tensor.
pub fn per_example_l2(x: &Tensor) -> Result<Tensor> {
    Ok(x.flatten_from(1)?.sqr()?.sum(1)?.sqrt()?)
}

/// An `N` tensor reshaped to `N x 1 x ... x 1` (`rank` dimensions) to broadcast against
/// a batch.
pub fn per_example(values: &Tensor, rank: usize) -> Result<Tensor> {
    let mut shape = vec![1usize; rank.max(1)];
    shape[0] = values.elem_count();
    Ok(values.reshape(shape)?)
}

/// Row `i` of the result is row `i` of `on_true` where `mask[i]`, else of `on_false`.
pub(crate) fn select_rows(mask: &[bool], on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
    let m: Vec<u8> = mask.iter().map(|&b| u8::from(b)).collect();
    let m = Tensor::from_vec(m, mask.len(), on_true.device())?;
    let m = per_example(&m, on_true.rank())?.broadcast_as(on_true.shape())?;
    Ok(m.where_cond(on_true, on_false)?)
}

/// `base` with its rows at `indices` replaced, in order, by the rows of `rows`.
pub(crate) fn scatter_rows(base: &Tensor, indices: &[usize], rows: &Tensor) -> Result<Tensor> {
    let n = base.dim(0)?;
    let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
    let idx = Tensor::from_vec(idx, indices.len(), base.device())?;
    let placed = base.zeros_like()?.index_add(&idx, rows, 0)?;
    let mut mask = vec![false; n];
    for &i in indices {
        mask[i] = true;
    }
    select_rows(&mask, &placed, base)
}

/// The rows of `x` at `indices`.
pub(crate) fn gather_rows(x: &Tensor, indices: &[usize]) -> Result<Tensor> {
    let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
    let idx = Tensor::from_vec(idx, indices.len(), x.device())?;
    Ok(x.index_select(&idx, 0)?)
}

/// A `u32` tensor of classes.
pub(crate) fn class_tensor(classes: &[u32], device: &candle_core::Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(classes.to_vec(), classes.len(), device)?)
}

/// An `N` tensor as `f64` values.
pub(crate) fn to_f64s(values: &Tensor) -> Result<Vec<f64>> {
    Ok(values.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn l2_projection_shrinks_only_long_rows() {
        let d = Tensor::new(&[[3f32, 4.0], [0.3, 0.4]], &Device::Cpu).unwrap();
        let p = project_l2(&d, 1.0).unwrap();
        let norms = to_f64s(&per_example_l2(&p).unwrap()).unwrap();
        assert!((norms[0] - 1.0).abs() < 1e-6);
        assert!((norms[1] - 0.5).abs() < 1e-6);
        let zero = project_l2(&d, 0.0).unwrap();
        assert_eq!(
            zero.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }

    #[test]
    fn scatter_replaces_the_named_rows() {
        let base = Tensor::zeros((4, 2), DType::F32, &Device::Cpu).unwrap();
        let rows = Tensor::new(&[[1f32, 1.0], [2.0, 2.0]], &Device::Cpu).unwrap();
        let out = scatter_rows(&base, &[3, 1], &rows).unwrap();
        let v: Vec<Vec<f32>> = out.to_vec2().unwrap();
        assert_eq!(
            v,
            vec![
                vec![0.0, 0.0],
                vec![2.0, 2.0],
                vec![0.0, 0.0],
                vec![1.0, 1.0]
            ]
        );
        let back = gather_rows(&out, &[3, 1])
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(back, vec![vec![1.0, 1.0], vec![2.0, 2.0]]);
    }
}
