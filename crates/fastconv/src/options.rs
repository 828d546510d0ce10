//! The options of the ops, as named types instead of bools and tuples: the public
//! [`ConvOptions`], [`Activation`] and [`ConvLayer`], and the crate's [`BatchLayout`].

use candle_core::Tensor;

/// Stride and symmetric zero padding of a square 2-D convolution (PyTorch's `stride`
/// and `padding`, the same along both axes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvOptions {
    /// Step between two output pixels, in input pixels.
    pub stride: usize,
    /// Zeros added on each side of the input, in pixels.
    pub padding: usize,
}

impl ConvOptions {
    /// A convolution with this stride and padding.
    pub const fn new(stride: usize, padding: usize) -> Self {
        Self { stride, padding }
    }
}

impl Default for ConvOptions {
    /// Stride 1, no padding (PyTorch's defaults).
    fn default() -> Self {
        Self::new(1, 0)
    }
}

/// The activation applied after a convolution's bias, fused into its output pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    /// No activation: `conv(x) + b`.
    #[default]
    Identity,
    /// `max(conv(x) + b, 0)`; NaN passes through, as in candle's `relu`.
    Relu,
    /// `elu(conv(x) + b)` with `α = 1`: `v` where `v` is positive (its sign bit clear),
    /// `exp(v) - 1` elsewhere, to the bit candle's `elu(1.0)` in value and gradient.
    Elu,
}

impl Activation {
    /// Whether this is ReLU.
    pub(crate) fn is_relu(self) -> bool {
        self == Activation::Relu
    }
}

/// How a batch lies in memory: PyTorch's `N x C x H x W`, or channels-last
/// `N x H x W x C` (the `_nhwc` ops). Kernels keep PyTorch's `C_out x C_in x k x k`
/// either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BatchLayout {
    /// `N x C x H x W`.
    ChannelsFirst,
    /// `N x H x W x C`.
    ChannelsLast,
}

impl BatchLayout {
    /// Whether this is channels-last.
    pub(crate) fn is_channels_last(self) -> bool {
        self == BatchLayout::ChannelsLast
    }
}

/// One convolution layer's parameters: kernel (`C_out x C_in x k x k`, PyTorch's
/// layout), bias (`C_out`) and options.
#[derive(Debug, Clone, Copy)]
pub struct ConvLayer<'a> {
    /// The kernel, `C_out x C_in x k x k`.
    pub weight: &'a Tensor,
    /// The bias, `C_out`.
    pub bias: &'a Tensor,
    /// Stride and padding.
    pub options: ConvOptions,
}

impl<'a> ConvLayer<'a> {
    /// A layer of these parameters.
    pub fn new(weight: &'a Tensor, bias: &'a Tensor, options: ConvOptions) -> Self {
        Self {
            weight,
            bias,
            options,
        }
    }
}
