//! What every pass shares: the element types ([`Elem`], f32 and f64) and their
//! transposes, the output buffers ([`unwritten`] and [`zeros`]), and one
//! convolution's shapes ([`Geometry`]), and the instruction set the Winograd rounds run
//! ([`SimdPath`]).
//!
//! Every routine works on one image at a time with caller-provided scratch, so the
//! batch can be split across threads with one scratch buffer per thread.

mod elem;
mod exp;
mod geometry;
mod isa;
mod memory;

pub(crate) use elem::{
    as_f32, as_f32_mut, elu_grad, relu_grad, sum, transpose, transpose_into, Elem,
};
pub(crate) use geometry::Geometry;
pub use isa::{cpu_simd_path, limit_simd_path, simd_path, SimdPath};
pub(crate) use memory::{as_unwritten, assume_written, unwritten, zeros};
