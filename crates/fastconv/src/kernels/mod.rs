//! What every pass shares: the element types ([`Elem`], f32 and f64) and their
//! transposes, the output buffers ([`unwritten`] and [`zeros`]), and one
//! convolution's shapes ([`Geometry`]).
//!
//! Every routine works on one image at a time with caller-provided scratch, so the
//! batch can be split across threads with one scratch buffer per thread.

mod elem;
mod geometry;
mod memory;

pub(crate) use elem::{relu_grad, sum, transpose, transpose_into, Elem};
pub(crate) use geometry::Geometry;
pub(crate) use memory::{as_unwritten, assume_written, unwritten, zeros};
