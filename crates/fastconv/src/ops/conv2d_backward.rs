//! The backward ops of the GEMM paths: the input gradient, the weight and bias
//! gradients (with ReLU's mask applied as they read the output gradient, when the input
//! gradient is not wanted), and the activations' masks on their own.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

use super::{
    batch_shape, check_output_gradient, dims4, geometry_of, nchw, slice, with_dtype, Dims4, Same,
};
use crate::kernels::{elu_grad, relu_grad, Geometry};
use crate::options::{BatchLayout, ConvOptions};
use crate::passes::input_grad::backward_data;
use crate::passes::weight_grad::backward_weight;

/// An activation's backward from its output `y`: `grad * act'`. ReLU: `grad` where
/// `y > 0`, else zero; ELU (`α = 1`): `grad` where `y > 0`, `grad * (y + 1)` elsewhere,
/// as candle's backward of `elu(1.0)` computes it.
#[derive(Clone, Copy)]
pub(crate) enum OutputMask {
    Relu,
    Elu,
}

impl CustomOp2 for OutputMask {
    fn name(&self) -> &'static str {
        match self {
            OutputMask::Relu => "fast-conv2d-relu-mask",
            OutputMask::Elu => "fast-conv2d-elu-mask",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("fast conv2d: gradient and output shapes differ");
        }
        fn run<T: Same>(
            mask: OutputMask,
            g: &[T],
            (s2, l2): (&CpuStorage, &Layout),
        ) -> Result<Vec<T>> {
            let y = T::same(s2, l2, "output")?;
            let mut out = Vec::with_capacity(g.len());
            let pairs = g.par_iter().zip(y);
            match mask {
                OutputMask::Relu => pairs
                    .map(|(&g, &y)| relu_grad(g, y))
                    .collect_into_vec(&mut out),
                OutputMask::Elu => pairs
                    .map(|(&g, &y)| elu_grad(g, y))
                    .collect_into_vec(&mut out),
            }
            Ok(out)
        }
        let out = with_dtype!("fast conv2d activation mask", s1, |g| run(
            *self,
            slice(g, l1, "gradient")?,
            (s2, l2)
        )?);
        Ok((out, l1.shape().clone()))
    }
}

/// The input gradient: (output gradient, kernel) -> `N x C_in x H x W` (or
/// `N x H x W x C_in`, from a channels-last gradient).
pub(crate) struct BackwardData {
    pub(crate) options: ConvOptions,
    /// `N, C, H, W`.
    pub(crate) input: Dims4,
    pub(crate) layout: BatchLayout,
}

impl CustomOp2 for BackwardData {
    fn name(&self) -> &'static str {
        "fast-conv2d-backward-data"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let layout = self.layout;
        let g = geometry_of(self.input, dims4(l2, "kernel")?, self.options)?;
        check_output_gradient(l1, &g, layout)?;
        fn run<T: Same>(
            g: &Geometry,
            layout: BatchLayout,
            gy: &[T],
            (s2, l2): (&CpuStorage, &Layout),
        ) -> Result<Vec<T>> {
            Ok(backward_data(g, gy, T::same(s2, l2, "kernel")?, layout))
        }
        let out = with_dtype!("fast conv2d input gradient", s1, |gy| run(
            &g,
            layout,
            slice(gy, l1, "gradient")?,
            (s2, l2)
        )?);
        Ok((out, batch_shape(self.input, layout)))
    }
}

/// The weight and bias gradients: (input, output gradient) -> flat `dW | db`.
pub(crate) struct BackwardWeight {
    pub(crate) options: ConvOptions,
    pub(crate) kernel: Dims4,
    pub(crate) layout: BatchLayout,
}

impl CustomOp2 for BackwardWeight {
    fn name(&self) -> &'static str {
        "fast-conv2d-backward-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), None)
    }
}

impl BackwardWeight {
    /// The flat `dW | db` from (input, output gradient), the gradient through ReLU's
    /// mask when `mask` holds the layer's output.
    fn run(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        mask: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let layout = self.layout;
        let x = nchw(dims4(l1, "input")?, layout);
        let g = geometry_of(x, self.kernel, self.options)?;
        check_output_gradient(l2, &g, layout)?;
        if let Some((_, l3)) = mask {
            if l3.shape() != l2.shape() {
                candle_core::bail!("fast conv2d: gradient and output shapes differ");
            }
        }
        fn run<T: Same>(
            g: &Geometry,
            layout: BatchLayout,
            x: &[T],
            (s2, l2): (&CpuStorage, &Layout),
            mask: Option<(&CpuStorage, &Layout)>,
        ) -> Result<Vec<T>> {
            let gy = T::same(s2, l2, "gradient")?;
            let y = match mask {
                Some((s3, l3)) => Some(T::same(s3, l3, "output")?),
                None => None,
            };
            Ok(backward_weight(g, x, (gy, y), layout))
        }
        let out = with_dtype!("fast conv2d weight gradient", s1, |x| run(
            &g,
            layout,
            slice(x, l1, "input")?,
            (s2, l2),
            mask
        )?);
        Ok((out, Shape::from(g.c_out * g.ckk() + g.c_out)))
    }
}

/// The weight and bias gradients of `relu(conv(x, w) + b)`: (input, output gradient,
/// output) -> flat `dW | db`.
pub(crate) struct BackwardWeightMasked(pub(crate) BackwardWeight);

impl CustomOp3 for BackwardWeightMasked {
    fn name(&self) -> &'static str {
        "fast-conv2d-relu-backward-weight-masked"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.0.run((s1, l1), (s2, l2), Some((s3, l3)))
    }
}
