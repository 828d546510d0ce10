//! The GEMM paths: every convolution that Winograd does not take, as products on the
//! `gemm` crate (the GEMM candle itself uses).
//!
//! - [`im2col`]: the unfolded image (`C_in k² x Ho Wo`) and one product per image, and
//!   its adjoint [`col2im`] for the input gradient at stride 2 and above;
//! - [`shifted`]: at stride 1 (16+ input channels, kernels up to 3x3, 12+ output
//!   columns), one GEMM per kernel tap over shifted views of the padded input, with no
//!   unfolded copy;
//! - [`matmul`]: the one checked call into `gemm`.

mod im2col;
mod matmul;
pub(crate) mod shifted;

pub(crate) use im2col::{col2im, im2col};
pub(crate) use matmul::{matmul, matmul_unwritten, Mat};
