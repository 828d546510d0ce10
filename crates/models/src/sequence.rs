//! A classifier written out as a plain sequence of layers, for tools that walk a network
//! layer by layer (bound propagation in the `certify` crate). The layers hold the
//! model's own weight tensors (candle tensors share storage): no second copy of the
//! weights exists in any file.

use candle_core::Tensor;

use crate::traits::Classifier;

/// One step of a [`LayerSequence`], on one example (shapes without the batch axis).
#[derive(Debug, Clone)]
pub enum Layer {
    /// `y = W x + b`, weight `out x in` (PyTorch layout), bias `out`; the input is a vector.
    Linear {
        /// Weight, `out x in`.
        weight: Tensor,
        /// Bias, `out`.
        bias: Tensor,
    },
    /// A 2-D convolution with zero padding, weight `out x in x kh x kw`, bias `out`,
    /// the same stride and padding on both axes.
    Conv2d {
        /// Weight, `out x in x kh x kw`.
        weight: Tensor,
        /// Bias, `out`.
        bias: Tensor,
        /// Stride.
        stride: usize,
        /// Zero padding on each side.
        padding: usize,
    },
    /// `max(x, 0)` elementwise.
    Relu,
    /// Max-pooling over `k x k` windows with stride `k` (`H`, `W` divisible by `k`).
    MaxPool {
        /// Window side and stride.
        k: usize,
    },
    /// Mean over the spatial axes: `C x H x W -> C`.
    GlobalAvgPool,
    /// `C x H x W -> C*H*W` in row-major order.
    Flatten,
}

/// A [`Classifier`] whose logits are exactly its [`LayerSequence::layers`] applied in
/// order to one `input_shape` image.
pub trait LayerSequence: Classifier {
    /// The layers, first to last, holding the model's weight tensors.
    fn layers(&self) -> Vec<Layer>;

    /// Shape of one input, `C x H x W` (`1 x 28 x 28` for MNIST).
    fn input_shape(&self) -> [usize; 3] {
        [1, 28, 28]
    }
}
