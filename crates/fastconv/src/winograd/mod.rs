//! Winograd convolutions for 3x3 and 5x5 kernels at stride 1 (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", CVPR 2016).
//!
//! The output is cut into `m x m` tiles, each computed from an `a x a` input patch
//! (`a = m + r - 1` for an `r x r` kernel) as `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Summed over input channels, the
//! element-wise product becomes `a²` independent matrix products, one per position of
//! the transformed tile: `M[k] = U[k] · V[k]` with `U[k]` the transformed kernels
//! (`C_out x C_in`) and `V[k]` the transformed patches (`C_in x tiles`). F(4x4, 3x3)
//! needs 36 multiplies per 16 outputs where the direct convolution needs 144: a 4x
//! smaller GEMM, for transforms that cost a few additions per value.
//!
//! The map is bilinear in kernel and patch, so its adjoints give the backward passes:
//! - input gradient: a stride-1 convolution of the output gradient with the flipped,
//!   transposed kernel (the caller's `forward` of the backward geometry), so it runs
//!   here too;
//! - weight gradient: `dU[k] = Σ_tiles (A dY Aᵀ)[k] ⊙ V[k]`, again `a²` GEMMs
//!   (`C_out x tiles` by `tiles x C_in`), then `dW = Gᵀ dU G`.
//!
//! Tiles that stick out of the output are computed and cropped (forward), or fed zero
//! gradient (backward); patches that stick out of the input read zeros, which is the
//! convolution's zero padding.
//!
//! Storage is channels-last, `V[k]` and `M[k]` as `tiles x channels`, so that every
//! transform works on eight channels at once (one AVX register of f32) with contiguous
//! loads and stores; images are transposed in and out in 8 x 8 blocks. Work is cut
//! into rounds of about 128 tiles per thread, and the rounds run in functions compiled
//! for AVX-512 or AVX2+FMA when the CPU has them; in the AVX-512 build the f32 small
//! products run on sixteen lanes (`wide`), and so do the f32 transforms over channel
//! counts that are multiples of 16 (`lanes::wide_lanes`).
//!
//! Files: [`variant`] (F(4x4, 3x3), F(5x5, 3x3) and F(3x3, 5x5): the one-dimensional
//! transforms), `lanes`
//! (eight or sixteen channels as one value), `transform` (kernel and tile transforms), `small_gemm`
//! (the `a²` products; `wide` their sixteen-lane AVX-512 f32 kernel), `scratch` (per-thread buffers kept between calls), `source`
//! (where a pass reads images or gradients from, unpooling on the fly), `forward` and
//! `weight_grad` (the passes' rounds), [`backward`] (both backward passes in one sweep
//! over the output gradient), `simd` (their AVX2+FMA and AVX-512 builds).

pub(crate) mod backward;
mod forward;
mod lanes;
mod scratch;
mod simd;
mod small_gemm;
mod source;
mod transform;
pub(crate) mod variant;
mod weight_grad;
#[cfg(target_arch = "x86_64")]
mod wide;

pub(crate) use forward::{forward, Destination};
pub(crate) use source::Source;
pub(crate) use variant::{prefers_f5, Variant, F3R5, F4, F5};
pub(crate) use weight_grad::{untransform_weight_grad, weight_grad_transformed};

use crate::kernels::Geometry;
use lanes::LANES;

/// Whether a geometry runs through Winograd: stride 1, 3x3 (padding up to 2) or 5x5
/// (padding up to 4, through F(3x3, 5x5)), and
/// channel counts on both sides that are multiples of the eight lanes the transforms
/// run on (which also keeps the `a²` GEMMs from being degenerate).
pub(crate) fn applies(g: &Geometry) -> bool {
    g.stride == 1
        && (g.k == 3 || g.k == 5)
        && g.pad < g.k
        && g.c_in.is_multiple_of(LANES)
        && g.c_out.is_multiple_of(LANES)
        && g.c_in > 0
        && g.c_out > 0
}

/// Whether ReLU then `k x k` max-pooling fuses into the output transform: the windows
/// must not straddle tiles.
pub(crate) fn pools<V: Variant>(k: usize) -> bool {
    k >= 1 && V::M % k == 0
}

/// Tiles per image and the padded plane that their patches are read from.
#[derive(Clone, Copy)]
struct Tiling {
    /// Tiles down and across.
    th: usize,
    tw: usize,
    /// The zero-padded input plane: `hp x wp`, the image at `(pad, pad)`.
    hp: usize,
    wp: usize,
}

impl Tiling {
    fn new<V: Variant>(g: &Geometry) -> Self {
        let th = g.ho.div_ceil(V::M);
        let tw = g.wo.div_ceil(V::M);
        Self {
            th,
            tw,
            hp: th * V::M + V::R - 1,
            wp: tw * V::M + V::R - 1,
        }
    }

    fn per_image(&self) -> usize {
        self.th * self.tw
    }
}

/// Images per GEMM round: enough tiles to keep the products efficient, few enough that
/// the transformed operands stay in cache.
fn images_per_round(tiles: usize) -> usize {
    const TARGET_TILES: usize = 128;
    TARGET_TILES.div_ceil(tiles.max(1)).max(1)
}

/// Images per round of the weight gradient: half a forward round's. The fused backward
/// sweep ([`backward`]) keeps four rounds' operands (each pass's transformed tiles and
/// products) where a forward round keeps two; at the forward's size they spilled out of
/// the core's cache (a training step measured ~6 % slower than with half rounds). The
/// separate weight pass takes the same rounds, so both add their products into `dU`
/// in the same groups, to the bit.
fn images_per_backward_round(tiles: usize) -> usize {
    images_per_round(tiles).div_ceil(2)
}
