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

/// The set certified: `{x : ||x - x0|| <= eps} ∩ [0, 1]^n`.
///
/// IBP uses its bounding box `[max(x0 - eps, 0), min(x0 + eps, 1)]` (exactly the set for
/// Linf); CROWN concretises a linear bound over that box for Linf and over the L2 ball
/// by the dual norm (`a·x0 - eps ||a||_2`, the box ignored: a superset, so sound).
#[derive(Debug, Clone)]
pub struct Region {
    pub(crate) center: Tensor,
    pub(crate) lower: Tensor,
    pub(crate) upper: Tensor,
    pub(crate) norm: Norm,
    pub(crate) eps: f64,
}

impl Region {
    /// The ball of radius `eps` around `image` (any shape with the network's number of
    /// inputs, values in [0, 1]).
    pub fn new(net: &Network, image: &Tensor, norm: Norm, eps: f64) -> Result<Self> {
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(input(format!("eps must be finite and >= 0, got {eps}")));
        }
        let n = net.input_len();
        if image.elem_count() != n {
            return Err(input(format!(
                "the image has shape {:?}, the network takes {:?}",
                image.dims(),
                net.input_shape()
            )));
        }
        let values: Vec<f64> = image
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        if let Some(i) = values.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return Err(input(format!(
                "pixel {i} of the image is {}, outside [0, 1]",
                values[i]
            )));
        }
        let mut shape = vec![1];
        shape.extend_from_slice(net.input_shape());
        let lo: Vec<f64> = values.iter().map(|v| (v - eps).max(0.0)).collect();
        let hi: Vec<f64> = values.iter().map(|v| (v + eps).min(1.0)).collect();
        let dev = Device::Cpu;
        Ok(Self {
            center: Tensor::from_vec(values, shape.as_slice(), &dev)?,
            lower: Tensor::from_vec(lo, shape.as_slice(), &dev)?,
            upper: Tensor::from_vec(hi, shape.as_slice(), &dev)?,
            norm,
            eps,
        })
    }

    /// The norm.
    pub fn norm(&self) -> Norm {
        self.norm
    }

    /// The radius.
    pub fn eps(&self) -> f64 {
        self.eps
    }
}
