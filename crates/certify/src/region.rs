//! The input sets: an Linf or L2 ball around an image, intersected with the [0, 1] box.

use candle_core::{DType, Device, Tensor};

use crate::error::{input, Result};
use crate::network::Network;

/// The norm of the ball.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// `max_i |x_i - x0_i| <= eps`.
    Linf,
    /// `||x - x0||_2 <= eps`.
    L2,
}

impl Norm {
    /// `"inf"` or `"2"`.
    pub fn name(&self) -> &'static str {
        match self {
            Norm::Linf => "inf",
            Norm::L2 => "2",
        }
    }
}

/// The set certified: `{x : ||x - x0|| <= eps} ∩ [0, 1]^n`, for one image or a batch of
/// images, each with its own radius.
///
/// IBP uses its bounding box `[max(x0 - eps, 0), min(x0 + eps, 1)]` (exactly the set for
/// Linf); CROWN concretises a linear bound over that box for Linf and over the L2 ball
/// by the dual norm (`a·x0 - eps ||a||_2`, the box ignored: a superset, so sound).
#[derive(Debug, Clone)]
pub struct Region {
    /// `N x input shape`, as are `lower` and `upper`.
    pub(crate) center: Tensor,
    pub(crate) lower: Tensor,
    pub(crate) upper: Tensor,
    pub(crate) norm: Norm,
    /// One radius per image.
    pub(crate) eps: Vec<f64>,
}

/// `image` (any shape with the network's number of inputs) as a batch `1 x n`, or an
/// error naming both shapes.
pub(crate) fn as_batch_of_one(net: &Network, image: &Tensor) -> Result<Tensor> {
    let n = net.input_len();
    if image.elem_count() != n {
        return Err(input(format!(
            "the image has shape {:?}, the network takes {:?}",
            image.dims(),
            net.input_shape()
        )));
    }
    Ok(image.reshape((1, n))?)
}

impl Region {
    /// The ball of radius `eps` around `image` (any shape with the network's number of
    /// inputs, values in [0, 1]).
    pub fn new(net: &Network, image: &Tensor, norm: Norm, eps: f64) -> Result<Self> {
        Self::batch(net, &as_batch_of_one(net, image)?, norm, &[eps])
    }

    /// One ball per image of `images` (`N x ...`, each image with the network's number
    /// of inputs, values in [0, 1]), image `i` of radius `eps[i]`.
    pub fn batch(net: &Network, images: &Tensor, norm: Norm, eps: &[f64]) -> Result<Self> {
        if let Some(e) = eps.iter().find(|e| !(e.is_finite() && **e >= 0.0)) {
            return Err(input(format!("eps must be finite and >= 0, got {e}")));
        }
        let n = net.input_len();
        let count = images.dims().first().copied().unwrap_or(0);
        if count == 0 || count != eps.len() || images.elem_count() != count * n {
            return Err(input(format!(
                "images of shape {:?} with {} radii: need N >= 1 images of {:?} and N radii",
                images.dims(),
                eps.len(),
                net.input_shape()
            )));
        }
        let values: Vec<f64> = images
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        if let Some(i) = values.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return Err(input(format!(
                "pixel {} of image {} is {}, outside [0, 1]",
                i % n,
                i / n,
                values[i]
            )));
        }
        let mut shape = vec![count];
        shape.extend_from_slice(net.input_shape());
        let (mut lo, mut hi) = (
            Vec::with_capacity(values.len()),
            Vec::with_capacity(values.len()),
        );
        for (i, v) in values.iter().enumerate() {
            let e = eps[i / n];
            lo.push((v - e).max(0.0));
            hi.push((v + e).min(1.0));
        }
        let dev = Device::Cpu;
        Ok(Self {
            center: Tensor::from_vec(values, shape.as_slice(), &dev)?,
            lower: Tensor::from_vec(lo, shape.as_slice(), &dev)?,
            upper: Tensor::from_vec(hi, shape.as_slice(), &dev)?,
            norm,
            eps: eps.to_vec(),
        })
    }

    /// The norm.
    pub fn norm(&self) -> Norm {
        self.norm
    }

    /// The radius of each image.
    pub fn eps(&self) -> &[f64] {
        &self.eps
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.eps.len()
    }

    /// Whether the region holds no image (never: construction needs one).
    pub fn is_empty(&self) -> bool {
        self.eps.is_empty()
    }

    /// The radii as a tensor `N x 1 x ... x 1` with `rank` dimensions, to scale
    /// per-image values of that rank.
    pub(crate) fn eps_tensor(&self, rank: usize) -> Result<Tensor> {
        let mut shape = vec![1; rank.max(1)];
        shape[0] = self.eps.len();
        Ok(Tensor::from_vec(
            self.eps.clone(),
            shape.as_slice(),
            &Device::Cpu,
        )?)
    }
}
