//! The process-wide switches between the fast ops and candle's, and between Winograd
//! and the GEMM paths, and the tests of whether a tensor takes the fast path.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor};

use crate::kernels::Geometry;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Switches the fast CPU path on or off for the whole process (on by default). Off,
/// [`conv2d`](crate::conv2d) and [`max_pool2d`](crate::max_pool2d) run candle's own
/// ops: for comparing speed, or for ruling the fast path out when a result looks
/// wrong.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the fast CPU path is on (see [`set_enabled`]).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

static WINOGRAD: AtomicBool = AtomicBool::new(true);

/// Switches Winograd (F(4x4, 3x3) or F(5x5, 3x3) for stride-1 3x3 layers, F(3x3, 5x5)
/// for 5x5 ones) on or off for the whole process (on by default), when both channel
/// counts are multiples of 8. In f32 its value and both gradients are within about
/// 5e-6 of the output's scale of the exact (f64) convolution (3e-6 to 5e-6 measured
/// forward on GapCnn's layer shapes, F(5x5) at the top of that range; 4.8e-6 forward
/// and 5.5e-6 / 6.3e-6 for the input / weight gradients on the oracle's 32 -> 64 5x5),
/// against 2e-7 to 6e-7 for the GEMM paths; off, those layers run the GEMM paths.
pub fn set_winograd(on: bool) {
    WINOGRAD.store(on, Ordering::Relaxed);
}

/// Whether stride-1 3x3 and 5x5 layers run Winograd (see [`set_winograd`]).
pub fn winograd_enabled() -> bool {
    WINOGRAD.load(Ordering::Relaxed)
}

/// Whether a convolution of geometry `g` runs through Winograd.
pub(crate) fn use_winograd(g: &Geometry) -> bool {
    winograd_enabled() && crate::winograd::applies(g)
}

/// Whether the ops of this crate take their fast CPU path on `x` (they are switched
/// on, `x` is on the CPU, in f32 or f64).
pub fn runs_fast(x: &Tensor) -> bool {
    enabled() && x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Whether a model of stride-1 3x3 layers should run `x` channels-last (the `_nhwc`
/// ops): on the fast path with Winograd on, whose kernels work channels-last. Off the
/// fast path the `_nhwc` ops only add permutes around candle's, and without Winograd
/// the channels-first GEMM paths are the faster ones (one GEMM per kernel tap over the
/// padded image, where channels-last goes through im2col).
pub fn prefers_channels_last(x: &Tensor) -> bool {
    runs_fast(x) && winograd_enabled()
}
