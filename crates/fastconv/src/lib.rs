//! Fast CPU convolutions and pooling as candle custom ops with their own backward
//! passes: the hot path of every model's training, attacks and maps.
//!
//! candle 0.11's CPU conv2d reaches a small fraction of the machine's GEMM rate forward
//! (measured: `docs/PERFORMANCE.md`) and runs its input gradient as a direct-loop
//! transposed convolution. Here every pass is Winograd, or one `gemm` product per image
//! (im2col, or one per kernel tap), the batch split across rayon's threads with one
//! scratch buffer per thread.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use fastconv::{conv2d, conv2d_relu_pool, Activation, ConvOptions};
//! # fn main() -> candle_core::Result<()> {
//! let x = Tensor::ones((2, 8, 6, 6), DType::F32, &Device::Cpu)?;
//! let w = Tensor::ones((16, 8, 3, 3), DType::F32, &Device::Cpu)?;
//! let b = Tensor::zeros(16, DType::F32, &Device::Cpu)?;
//! let same = ConvOptions::new(1, 1);
//! let y = conv2d(&x, &w, &b, same, Activation::Relu)?;
//! assert_eq!(y.dims4()?, (2, 16, 6, 6));
//! // Convolution, ReLU and a 2x2 max-pool as one op.
//! let pooled = conv2d_relu_pool(&x, &w, &b, same, 2)?;
//! assert_eq!(pooled.dims4()?, (2, 16, 3, 3));
//! # Ok(()) }
//! ```
//!
//! # The ops
//!
//! [`conv2d`] (bias and an [`Activation`] fused), [`max_pool2d`], and
//! [`conv2d_relu_pool`] (convolution, ReLU and max-pool as one op, whose backward keeps
//! one byte per pooled value, the position of its maximum, instead of the convolution's
//! output). Every op also takes channels-last batches ([`conv2d_nhwc`],
//! [`conv2d_relu_pool_nhwc`], [`global_average_pool_nhwc`], kernels still in PyTorch's
//! layout): a model that stays channels-last from layer to layer (GapCnn does, where
//! [`prefers_channels_last`] says so) never transposes its activations or gradients.
//! [`conv2d_pair_relu_pool_nhwc`] runs two layers as one op (parameters passed as
//! [`ConvLayer`]s, flattened to `W | b` inside) that keeps the first layer's output for
//! its own backward pass: candle 0.11's backward allocates a zero tensor for every
//! graph node and adds the node's gradient into it, which for GapCnn's conv1 output
//! (13 MB at batch 128) is a fill and an addition per step that the pair saves.
//!
//! Gradients are computed only for the arguments that take part in a gradient (an
//! attack's weights and a training step's input images are skipped). Other devices and
//! dtypes, or [`set_enabled`]`(false)`, fall back to candle's ops (and the `_nhwc` ops
//! to permutes around them); [`set_winograd`]`(false)` sends Winograd's layers to the
//! GEMM paths. [`runtime::tune_cpu_runtime`] (flush denormals on every worker, let
//! malloc reuse freed tensors, shorten candle's worker spin) is for binaries to call
//! once; libraries never do.
//!
//! # Which algorithm runs when
//!
//! | pass | runs | when |
//! | --- | --- | --- |
//! | forward | Winograd F(3x3, 5x5) | Winograd applies to a 5x5 kernel, unpooled (the oracle's layers: 49 multiplies per 9 outputs instead of 225) |
//! | | Winograd F(5x5, 3x3) | Winograd applies (below) and it needs fewer multiplies for the output size (a 14x14 output: 9 tiles of 49 instead of 16 of 36; ties go to F(4x4)), unpooled |
//! | | Winograd F(4x4, 3x3) | Winograd applies, otherwise; always when pooling (the 2x2 and 4x4 windows divide its tiles) |
//! | | direct, the output channels in registers (`passes::one_channel`) | channels-last, one input channel, kernel up to 5x5, output channels a multiple of 8 (GapCnn's conv1) |
//! | | one GEMM per kernel tap (`gemm_paths::shifted`) | channels-first, stride 1, 16+ input channels, kernel up to 3x3, 12+ output columns |
//! | | im2col + one GEMM per image | everything else |
//! | input gradient | the forward pass of the flipped, transposed kernel (so Winograd or the taps, as above) | stride 1, padding below the kernel size, 8+ input channels |
//! | | direct (`passes::one_channel`) | the direct forward's layers at stride 1, padding below the kernel size |
//! | | `col2im(Wᵀ · g)` | otherwise |
//! | weight + bias gradient | Winograd, `dW = Gᵀ [Σ (A dY Aᵀ) ⊙ (Bᵀ x B)] G` | Winograd applies |
//! | | direct (`passes::one_channel`) | as for the forward pass |
//! | | one GEMM per tap, else im2col, `Σ_n g_n · im2col(x_n)ᵀ` | as for the forward pass |
//! | input + weight gradients of a layer with ReLU | one Winograd sweep (`winograd::backward`): each image's output gradient filled once, for the flipped convolution's tiles and the weight gradient's | both wanted, Winograd applies to both passes, the output as large as the input (GapCnn's layers) |
//! | max-pool after a convolution | in Winograd's output transform | Winograd applies to a 3x3 kernel and the window divides 4 (the convolution then runs F(4x4)) |
//! | | the pooling record from the convolution's output | otherwise (channels-first only) |
//!
//! Winograd applies to stride-1 3x3 and 5x5 kernels with padding below the kernel size
//! whose channel counts
//! on both sides are multiples of 8, while [`winograd_enabled`]. With ReLU, where
//! both backward passes run Winograd, they read the output gradient through ReLU's
//! mask and the pooling record as they fill their tiles, never unpooled at full size;
//! elsewhere the masked (and unpooled) gradient is built first, then goes through the
//! passes above. A
//! channels-last [`conv2d_relu_pool_nhwc`] runs natively only where Winograd pools, and
//! [`conv2d_pair_relu_pool_nhwc`] only where the second layer does so over whole
//! windows; otherwise they run the channels-first or separate ops.
//!
//! Winograd keeps channels-last tiles so that every transform runs on eight channels at
//! once, its `a²` small products in a 6x16 register-blocked kernel without packing
//! (8x32 on sixteen-lane registers in f32 on AVX-512, to the same bits),
//! compiled for AVX2+FMA behind a runtime check. Each worker thread keeps its Winograd
//! scratch between calls (about 5 MB for GapCnn's widest layer).
//!
//! # Invariants
//!
//! No max-pool goes through candle's `max_pool2d` backward, which scales gradients by
//! (number of maxima)/k² in candle 0.11: [`max_pool2d`] routes each window's gradient
//! to its first maximum (PyTorch's rule), and its fallback is a reshape and two max
//! reductions.
//!
//! The fast ops equal candle's conv2d within f32 rounding in value and both gradients
//! over random shapes, strides and paddings (proptest; Winograd stays within 1e-5 of
//! the output's scale, about 5e-6 measured, and within 1e-12 in f64).
//!
//! The only `unsafe` in the workspace's library code is in this crate, each block under
//! an item-level `#[allow(unsafe_code)]` (the workspace denies it): the bounds-checked
//! `gemm` call (`gemm_paths::matmul`), the MXCSR read and write and `mallopt`
//! ([`runtime`]), AVX paths taken only after `is_x86_feature_detected!` (the AVX2+FMA
//! and AVX-512 builds of the Winograd rounds, see [`simd_path`], and an 8x8 f32
//! transpose in registers whose slices are bounds-checked first), and unchecked reads and writes in the Winograd hot
//! loops (`small_gemm`'s blocks, the tile transforms, the output transform), each
//! behind one assert of the largest index it can reach. The Winograd passes and the
//! im2col forward (whose `gemm` call does not read its destination) write their outputs
//! (and pooling codes) into memory that is not zeroed first (`kernels::unwritten`,
//! `MaybeUninit` until `assume_written`), because they write every value; this crate's
//! unit tests fill that memory with NaN bytes, so a value left unwritten fails the
//! comparisons against candle.
//!
//! # Layout
//!
//! `ops/` holds the custom ops, one file per public op, and their backward ops;
//! `passes/` the forward pass, input gradient, weight gradient and pooling over slices,
//! which choose the algorithm; `gemm_paths/` im2col, the per-tap GEMMs and the `gemm`
//! call; `winograd/` the transforms, small products, scratch and rounds; `kernels/`
//! the element types, buffers and geometry; `options` the ops' option types (and the
//! crate's batch layout); [`runtime`] the process tuning; `switch` the process-wide
//! switches. Dependencies run one way, from `ops` down through `passes` and `switch`
//! to `gemm_paths` and `winograd`, and to `kernels` and `options` at the bottom
//! (`xtask/tests/module_graph.rs` fails on a cycle).

#![deny(missing_docs)]

mod gemm_paths;
mod kernels;
mod ops;
mod options;
mod passes;
pub mod runtime;
mod switch;
mod winograd;

pub use kernels::{cpu_simd_path, limit_simd_path, simd_path, SimdPath};
pub use ops::average_pool::global_average_pool_nhwc;
pub use ops::conv2d::{conv2d, conv2d_flops, conv2d_nhwc, reference_conv2d};
pub use ops::conv2d_relu_pool::{conv2d_relu_pool, conv2d_relu_pool_nhwc};
pub use ops::elu::elu;
pub use ops::max_pool::max_pool2d;
pub use ops::pair::conv2d_pair_relu_pool_nhwc;
pub use ops::resize::{resize2d, Resize};
pub use options::{Activation, ConvLayer, ConvOptions};
pub use switch::{
    enabled, prefers_channels_last, runs_fast, set_enabled, set_winograd, winograd_enabled,
};

#[cfg(test)]
mod tests;
