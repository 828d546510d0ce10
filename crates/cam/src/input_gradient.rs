//! What the input-resolution methods share: checking a batch of grey images, the
//! gradient of target logits with respect to the input (candle autograd, only the input a
//! `Var`), a model's logits or gradients over many derived rows (interpolated, noisy,
//! occluded copies) `batch` rows at a time, and maps assembled from f64 accumulators.
//!
//! `cam` does not depend on `attacks` (ARCHITECTURE), so the input gradient is this
//! crate's own few lines rather than `attacks::input_gradient`.
//!
//! Every row's gradient is its own target logit's gradient because the logits of the
//! rows are summed before the backward pass: this needs a model that treats images
//! independently (no batch statistics), which holds for every model of this workspace.

use std::ops::Range;

use candle_core::{DType, Tensor, Var};
use models::Classifier;

use crate::activation_maps::ActivationMaps;
use crate::error::{CamError, Result};
use crate::target::MapClasses;

/// Rows (derived inputs) per forward and backward pass unless a method is told
/// otherwise: small enough for GapCnn's activations and gradients to stay in a few
/// hundred MB, large enough for its GEMMs to run at full speed.
pub(crate) const DEFAULT_BATCH: usize = 256;

/// `(n, h, w)` of a batch `N x 1 x h x w` (one grey channel), or a [`CamError::Shape`].
pub(crate) fn grey_batch(images: &Tensor) -> Result<(usize, usize, usize)> {
    match images.dims() {
        &[n, 1, h, w] => Ok((n, h, w)),
        d => Err(CamError::Shape(format!(
            "images must be N x 1 x h x w (one grey channel), got {d:?}"
        ))),
    }
}

/// A positive count setting (`steps`, `samples`, `batch`), or an
/// [`CamError::InvalidArgument`] naming it.
pub(crate) fn positive(name: &str, value: usize) -> Result<usize> {
    if value == 0 {
        Err(CamError::InvalidArgument(format!(
            "{name} must be at least 1"
        )))
    } else {
        Ok(value)
    }
}

/// The classes whose gradients one chunk of rows needs.
pub(crate) enum RowClasses {
    /// One class per row.
    PerRow(Vec<u32>),
    /// Every class of the model, one backward pass each.
    All,
}

impl RowClasses {
    /// The classes of `rows`, where row `r` belongs to image `image_of(r)`.
    pub(crate) fn of_rows(
        classes: &MapClasses,
        rows: Range<usize>,
        image_of: impl Fn(usize) -> usize,
    ) -> Self {
        match classes {
            MapClasses::PerImage(c) => {
                RowClasses::PerRow(rows.map(|r| c[image_of(r)] as u32).collect())
            }
            MapClasses::All(_) => RowClasses::All,
        }
    }
}

/// Logits (`R x K`, detached) of `rows` (`R x 1 x h x w`) and the gradients of their
/// target logits with respect to `rows`: `R x T x h x w`, `T` = 1 for
/// [`RowClasses::PerRow`] and `K` for [`RowClasses::All`] (`K` backward passes through
/// one forward). Zeros where a logit does not depend on the input.
pub(crate) fn target_gradients<M: Classifier + ?Sized>(
    model: &M,
    rows: &Tensor,
    classes: &RowClasses,
) -> Result<(Tensor, Tensor)> {
    let (r, h, w) = grey_batch(rows)?;
    let var = Var::from_tensor(&rows.detach())?;
    let logits = model.logits(var.as_tensor())?;
    let (_, k) = logits.dims2()?;
    let objectives: Vec<Tensor> = match classes {
        RowClasses::PerRow(c) => {
            if c.len() != r {
                return Err(CamError::Shape(format!("{} classes for {r} rows", c.len())));
            }
            let idx = Tensor::from_vec(c.clone(), (r, 1), rows.device())?;
            vec![logits.gather(&idx, 1)?.sum_all()?]
        }
        RowClasses::All => (0..k)
            .map(|c| logits.narrow(1, c, 1)?.sum_all())
            .collect::<candle_core::Result<_>>()?,
    };
    let mut grads = Vec::with_capacity(objectives.len());
    for objective in objectives {
        let g = objective.backward()?;
        grads.push(match g.get(var.as_tensor()) {
            Some(g) => g.detach().reshape((r, h, w))?,
            None => Tensor::zeros((r, h, w), rows.dtype(), rows.device())?,
        });
    }
    Ok((logits.detach(), Tensor::stack(&grads, 1)?))
}

/// Row-major f64 values of a tensor.
pub(crate) fn values_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?)
}

/// Runs `rows` derived rows through the model `batch` at a time: `make(range)` builds
/// the rows of `range` (`len x 1 x h x w`), and `sink(row, logits, gradient)` receives
/// each row in order with its logits (`K` values) and, when `classes` is given, the
/// gradient of its target logits (`T x h x w` values; empty otherwise, and then no
/// backward pass runs). Rows are visited in increasing order whatever `batch` is, so
/// sums built in `sink` do not depend on how the rows were chunked.
pub(crate) fn for_each_row<M, F, S>(
    model: &M,
    rows: usize,
    batch: usize,
    classes: Option<(&MapClasses, &dyn Fn(usize) -> usize)>,
    mut make: F,
    mut sink: S,
) -> Result<()>
where
    M: Classifier + ?Sized,
    F: FnMut(Range<usize>) -> Result<Tensor>,
    S: FnMut(usize, &[f64], &[f64]),
{
    let batch = positive("batch", batch)?;
    let mut start = 0;
    while start < rows {
        let range = start..(start + batch).min(rows);
        let chunk = make(range.clone())?;
        let (logits, grads) = match classes {
            Some((classes, image_of)) => {
                let row_classes = RowClasses::of_rows(classes, range.clone(), image_of);
                let (logits, grads) = target_gradients(model, &chunk, &row_classes)?;
                (logits, values_f64(&grads)?)
            }
            None => (model.logits(&chunk)?.detach(), Vec::new()),
        };
        let (len, k) = logits.dims2()?;
        if len != range.len() {
            return Err(CamError::Shape(format!(
                "the model returned {len} rows of logits for {} inputs",
                range.len()
            )));
        }
        let logits = values_f64(&logits)?;
        let per_row = grads.len() / len;
        for (j, row) in range.clone().enumerate() {
            let g = if per_row == 0 {
                &[][..]
            } else {
                &grads[j * per_row..(j + 1) * per_row]
            };
            sink(row, &logits[j * k..(j + 1) * k], g);
        }
        start = range.end;
    }
    Ok(())
}

/// `rows` of a batch (`N x ...`), by image index, contiguous.
pub(crate) fn select_images(images: &Tensor, image_of_rows: &[usize]) -> Result<Tensor> {
    let idx: Vec<u32> = image_of_rows.iter().map(|&i| i as u32).collect();
    let idx = Tensor::from_vec(idx, image_of_rows.len(), images.device())?;
    Ok(images.index_select(&idx, 0)?)
}

/// Maps from `N x T x h x w` values (image-major), in `dtype`, with the class axis
/// dropped when there is one map per image.
pub(crate) fn maps_from_values(
    values: Vec<f64>,
    (n, h, w): (usize, usize, usize),
    like: &Tensor,
    classes: MapClasses,
    logits: Tensor,
) -> Result<ActivationMaps> {
    let t = classes.maps_per_image();
    let maps = Tensor::from_vec(values, (n, t, h, w), like.device())?.to_dtype(like.dtype())?;
    ActivationMaps::from_4d(maps, classes, logits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_helpers::{finite_difference_gradient, LinearModel};
    use crate::test_model::{random_images, TinyCamModel};

    #[test]
    fn target_gradient_of_a_linear_model_is_its_weight_row() {
        let model = LinearModel::random(1, 3, 4, 4);
        let x = random_images(2, 2, 4);
        let (_, g) = target_gradients(&model, &x, &RowClasses::PerRow(vec![2, 0])).unwrap();
        assert_eq!(g.dims(), &[2, 1, 4, 4]);
        let w = model.weight_rows();
        assert_eq!(values_f64(&g.get(0).unwrap()).unwrap(), w[2]);
        assert_eq!(values_f64(&g.get(1).unwrap()).unwrap(), w[0]);
        let (_, all) = target_gradients(&model, &x, &RowClasses::All).unwrap();
        assert_eq!(all.dims(), &[2, 3, 4, 4]);
        let row = values_f64(&all.get(1).unwrap().get(1).unwrap()).unwrap();
        assert_eq!(row, w[1]);
    }

    #[test]
    fn target_gradients_match_finite_differences_on_the_tiny_cnn() {
        let model = TinyCamModel::random(4, 3, 4);
        let x = random_images(7, 2, 6);
        let (_, g) = target_gradients(&model, &x, &RowClasses::PerRow(vec![1, 3])).unwrap();
        for (i, class) in [(0usize, 1usize), (1, 3)] {
            let fd = finite_difference_gradient(&model, &x.get(i).unwrap(), class);
            let got = values_f64(&g.get(i).unwrap()).unwrap();
            for (a, b) in got.iter().zip(&fd) {
                assert!((a - b).abs() < 1e-7, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn rows_are_visited_in_order_whatever_the_chunk() {
        let model = TinyCamModel::random(0, 2, 3);
        let x = random_images(1, 5, 4);
        let mut seen = Vec::new();
        let classes = MapClasses::PerImage(vec![0; 5]);
        let image_of = |r: usize| r;
        for_each_row(
            &model,
            5,
            2,
            Some((&classes, &image_of)),
            |r| select_images(&x, &r.collect::<Vec<_>>()),
            |row, logits, grad| {
                assert_eq!((logits.len(), grad.len()), (3, 16));
                seen.push(row);
            },
        )
        .unwrap();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        assert!(for_each_row(&model, 5, 0, None, |_| Ok(x.clone()), |_, _, _| ()).is_err());
    }

    /// GapCnn in f32 runs fastconv's kernels (Winograd, GEMM over the batch): an image's
    /// map must still not depend on the rest of its batch or on the chunking.
    #[test]
    fn every_method_on_gapcnn_gives_an_image_the_same_map_in_any_batch() {
        use crate::test_helpers::assert_batch_of_n_is_n_batches_of_one;
        use crate::{
            Explainer, GradientTimesInput, IntegratedGradients, Occlusion, Saliency, SmoothGrad,
        };
        use models::{init_model, random::uniform, GapCnn};
        use rand::{rngs::StdRng, SeedableRng};

        let dev = candle_core::Device::Cpu;
        let (model, _) = init_model::<GapCnn>(0, DType::F32, &dev).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let x = uniform(&mut rng, (3, 1, 28, 28), 0.0, 1.0, DType::F32, &dev).unwrap();
        let methods: Vec<Box<dyn Explainer + '_>> = vec![
            Box::new(Saliency::new(&model)),
            Box::new(GradientTimesInput::new(&model)),
            Box::new(IntegratedGradients {
                steps: 4,
                batch: 5,
                ..IntegratedGradients::new(&model)
            }),
            Box::new(SmoothGrad {
                samples: 3,
                batch: 4,
                ..SmoothGrad::new(&model)
            }),
            Box::new(Occlusion {
                window: (7, 7),
                stride: (7, 7),
                batch: 9,
                ..Occlusion::new(&model)
            }),
        ];
        for method in &methods {
            assert_batch_of_n_is_n_batches_of_one(method.as_ref(), &x, &[7, 0, 3]);
        }
    }

    #[test]
    fn colour_images_are_rejected() {
        let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &candle_core::Device::Cpu).unwrap();
        assert!(matches!(grey_batch(&x), Err(CamError::Shape(_))));
    }
}
