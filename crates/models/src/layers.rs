//! The few layers the models are made of, as plain tensors: convolution, linear,
//! a differentiable bilinear resize, and parameter-spec helpers.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use fastconv::{Activation, ConvLayer, ConvOptions};

use crate::params::{Init, ParamSpec};

/// A 2-D convolution with bias (PyTorch layout: weight `out x in x k x k`).
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// Reads `{name}.weight` and `{name}.bias`.
    pub fn load(vb: &VarBuilder, name: &str, shape: ConvShape) -> Result<Self> {
        let w = vb.get(
            (shape.out, shape.inp, shape.k, shape.k),
            &format!("{name}.weight"),
        )?;
        let b = vb.get(shape.out, &format!("{name}.bias"))?;
        Ok(Self {
            weight: w,
            bias: b,
            stride: shape.stride,
            padding: shape.padding,
        })
    }

    /// The weight tensor.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// This convolution as a [`crate::Layer`] sharing its tensors.
    pub fn as_layer(&self) -> crate::Layer {
        crate::Layer::Conv2d {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            stride: self.stride,
            padding: self.padding,
        }
    }

    /// Stride and padding.
    fn options(&self) -> ConvOptions {
        ConvOptions::new(self.stride, self.padding)
    }

    /// This convolution's parameters, for the ops that take several layers.
    fn parameters(&self) -> ConvLayer<'_> {
        ConvLayer::new(&self.weight, &self.bias, self.options())
    }

    /// `elu(conv(x) + b)` (`α = 1`) in one op: to the bit `self.forward(x)?.elu(1.0)`,
    /// value and gradients, with ELU applied in place and its backward one pass
    /// (candle's builds masks in about ten full-size ops).
    pub fn forward_elu(&self, x: &Tensor) -> Result<Tensor> {
        let elu = Activation::Elu;
        fastconv::conv2d(x, &self.weight, &self.bias, self.options(), elu)
    }

    /// `relu(conv(x) + b)` in one pass (the fused fast path on the CPU).
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        fastconv::conv2d(
            x,
            &self.weight,
            &self.bias,
            self.options(),
            Activation::Relu,
        )
    }

    /// `max_pool(relu(conv(x) + b), k)` in one op (see [`fastconv::conv2d_relu_pool`]).
    pub fn forward_relu_pool(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        fastconv::conv2d_relu_pool(x, &self.weight, &self.bias, self.options(), k)
    }

    /// [`Conv::forward_relu`] on a channels-last batch (`N x H x W x C`, see
    /// [`fastconv::conv2d_nhwc`]).
    pub fn forward_relu_nhwc(&self, x: &Tensor) -> Result<Tensor> {
        let relu = Activation::Relu;
        fastconv::conv2d_nhwc(x, &self.weight, &self.bias, self.options(), relu)
    }

    /// [`Conv::forward_relu_pool`] on a channels-last batch (see
    /// [`fastconv::conv2d_relu_pool_nhwc`]).
    pub fn forward_relu_pool_nhwc(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        fastconv::conv2d_relu_pool_nhwc(x, &self.weight, &self.bias, self.options(), k)
    }

    /// `max_pool(relu(next(relu(self(x)))), k)` on a channels-last batch, the two
    /// layers as one op whose intermediate output is not a node of candle's graph (see
    /// [`fastconv::conv2d_pair_relu_pool_nhwc`]).
    pub fn forward_pair_relu_pool_nhwc(&self, next: &Conv, x: &Tensor, k: usize) -> Result<Tensor> {
        fastconv::conv2d_pair_relu_pool_nhwc(x, self.parameters(), next.parameters(), k)
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let identity = Activation::Identity;
        fastconv::conv2d(x, &self.weight, &self.bias, self.options(), identity)
    }
}

/// Shape of a square convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Input channels.
    pub inp: usize,
    /// Output channels.
    pub out: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl ConvShape {
    /// A `k x k` convolution with "same" padding at stride 1 (`k` odd).
    pub fn same(inp: usize, out: usize, k: usize, stride: usize) -> Self {
        Self {
            inp,
            out,
            k,
            stride,
            padding: k / 2,
        }
    }

    /// Weight and bias specs for a convolution followed by ReLU: He-uniform weights,
    /// zero biases.
    pub fn specs(&self, name: &str) -> Vec<ParamSpec> {
        let fan_in = self.inp * self.k * self.k;
        vec![
            ParamSpec::new(
                format!("{name}.weight"),
                &[self.out, self.inp, self.k, self.k],
                Init::he(fan_in),
            ),
            ParamSpec::new(format!("{name}.bias"), &[self.out], Init::Zeros),
        ]
    }

    /// Weight and bias specs, Xavier-uniform weights and zero biases (the SVAE's init).
    pub fn xavier_specs(&self, name: &str) -> Vec<ParamSpec> {
        let kk = self.k * self.k;
        vec![
            ParamSpec::new(
                format!("{name}.weight"),
                &[self.out, self.inp, self.k, self.k],
                Init::xavier(self.inp * kk, self.out * kk),
            ),
            ParamSpec::new(format!("{name}.bias"), &[self.out], Init::Zeros),
        ]
    }
}

/// A fully connected layer (PyTorch layout: weight `out x in`).
#[derive(Debug, Clone)]
pub struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    /// Reads `{name}.weight` (`out x inp`) and `{name}.bias`.
    pub fn load(vb: &VarBuilder, name: &str, inp: usize, out: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out, inp), &format!("{name}.weight"))?,
            bias: vb.get(out, &format!("{name}.bias"))?,
        })
    }

    /// Weight specs with PyTorch's default init.
    pub fn specs(name: &str, inp: usize, out: usize) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new(
                format!("{name}.weight"),
                &[out, inp],
                Init::torch_default(inp),
            ),
            ParamSpec::new(format!("{name}.bias"), &[out], Init::torch_default(inp)),
        ]
    }

    /// Xavier-uniform weights, zero bias.
    pub fn xavier_specs(name: &str, inp: usize, out: usize) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new(
                format!("{name}.weight"),
                &[out, inp],
                Init::xavier(inp, out),
            ),
            ParamSpec::new(format!("{name}.bias"), &[out], Init::Zeros),
        ]
    }

    /// Weight `out x inp`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Bias `out`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// This layer as a [`crate::Layer`] sharing its tensors.
    pub fn as_layer(&self) -> crate::Layer {
        crate::Layer::Linear {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
        }
    }
}

/// Products with at most this many outputs (`rows x out`) take `gemm`'s small-product
/// path, which sums each dot product in another order than its blocked kernels.
const GEMM_SMALL_OUTPUTS: usize = 256;

/// Rows a batch through a dense layer of `out` outputs is padded to, so that its
/// product takes `gemm`'s blocked kernels whatever the batch (see [`Dense`]): more than
/// [`GEMM_SMALL_OUTPUTS`] outputs, and two rows at least (one row is a matrix-vector
/// product, summed in yet another order).
pub fn dense_min_rows(out: usize) -> usize {
    (GEMM_SMALL_OUTPUTS / out.max(1) + 1).max(2)
}

impl Module for Dense {
    /// `x W^T + b` for `x` of `N x in`. A row's bits do not depend on the batch it comes
    /// in: `gemm` sums a product of at most 256 outputs (its "horizontal" kernels) or of
    /// one row in another order than a larger one, so a batch below [`dense_min_rows`]
    /// is padded with zero rows, multiplied, and cut back (the padding carries no
    /// gradient back).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w_t = self.weight.t()?;
        let rows = x.dim(0)?;
        let min_rows = dense_min_rows(self.weight.dim(0)?);
        if x.rank() != 2 || rows >= min_rows || !x.device().is_cpu() {
            return x.matmul(&w_t)?.broadcast_add(&self.bias);
        }
        let pad = Tensor::zeros((min_rows - rows, x.dim(1)?), x.dtype(), x.device())?;
        Tensor::cat(&[x, &pad], 0)?
            .matmul(&w_t)?
            .narrow(0, 0, rows)?
            .broadcast_add(&self.bias)
    }
}

/// The `out x inp` matrix of a 1-D bilinear resize with TF1's legacy convention
/// (`align_corners = false`, no half-pixel centres): output `i` samples input
/// `i * inp / out`, interpolating between its floor and the next index (clamped).
pub fn bilinear_matrix(inp: usize, out: usize) -> Vec<f32> {
    let scale = inp as f64 / out as f64;
    let mut m = vec![0f32; out * inp];
    for i in 0..out {
        let src = i as f64 * scale;
        let lo = (src.floor() as usize).min(inp - 1);
        let hi = (lo + 1).min(inp - 1);
        let frac = (src - lo as f64) as f32;
        m[i * inp + lo] += 1.0 - frac;
        m[i * inp + hi] += frac;
    }
    m
}

/// A fixed bilinear resize of `N x C x h x w` maps, exact and differentiable (candle
/// has no bilinear backward): on the CPU in f32 or f64, [`fastconv::resize2d`], which
/// reads each output's two non-zero weights; elsewhere two dense matrix products
/// (columns, then rows). The two agree to the bit for 2x upsamplings (weights 1 and
/// 1/2, exact products), value and gradient.
#[derive(Debug, Clone)]
pub struct BilinearResize {
    rows_t: Tensor,
    cols_t: Tensor,
    out: (usize, usize),
    sparse: fastconv::Resize,
}

impl BilinearResize {
    /// A resize from `inp` to `out` (height, width).
    pub fn new(
        inp: (usize, usize),
        out: (usize, usize),
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (rm, cm) = (bilinear_matrix(inp.0, out.0), bilinear_matrix(inp.1, out.1));
        let wide = |m: &[f32]| m.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let sparse = fastconv::Resize::new(&wide(&rm), (out.0, inp.0), &wide(&cm), (out.1, inp.1))?;
        let rows = Tensor::from_vec(rm, (out.0, inp.0), device)?;
        let cols = Tensor::from_vec(cm, (out.1, inp.1), device)?;
        Ok(Self {
            rows_t: rows.t()?.contiguous()?.to_dtype(dtype)?,
            cols_t: cols.t()?.contiguous()?.to_dtype(dtype)?,
            out,
            sparse,
        })
    }

    /// The resize as two dense matrix products (the path off the CPU).
    pub fn forward_dense(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        // Columns: (N*C*h, w) x (w, W) -> (N*C*h, W).
        let y = x.reshape((n * c * h, w))?.matmul(&self.cols_t)?;
        // Rows: (N*C, W, h) x (h, H) -> (N*C, W, H), then back to N x C x H x W.
        let y = y
            .reshape((n * c, h, self.out.1))?
            .transpose(1, 2)?
            .contiguous()?;
        let y = y.broadcast_matmul(&self.rows_t)?;
        y.transpose(1, 2)?.reshape((n, c, self.out.0, self.out.1))
    }
}

impl Module for BilinearResize {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fastconv::runs_fast(x) {
            return fastconv::resize2d(x, &self.sparse);
        }
        self.forward_dense(x)
    }
}

/// Max-pooling with a square `k x k` window and stride `k` (`H` and `W` divisible by
/// `k`); see [`fastconv::max_pool2d`].
///
/// Not candle's `max_pool2d`: in 0.11 its backward scales the gradient by (number of
/// maxima) / k^2 instead of routing it to the maximum, so input gradients through two
/// 2x2 pools come out 16 times too small (caught by the finite-difference tests).
pub fn max_pool(x: &Tensor, k: usize) -> Result<Tensor> {
    fastconv::max_pool2d(x, k)
}

/// `log(1 + exp(x))`, computed stably and differentiably.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let pos = x.relu()?;
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    pos + tail
}

/// Mean over the two spatial dimensions: `N x K x h x w -> N x K`.
pub fn global_average_pool(x: &Tensor) -> Result<Tensor> {
    x.mean(D::Minus1)?.mean(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_matches_tf1_legacy_resize() {
        // tf.compat.v1.image.resize_bilinear(x, [4], align_corners=False) on [0, 1]:
        // sources 0, 0.5, 1 (clamped), 1.5 -> 0, 0.5, 1, 1.
        let m = bilinear_matrix(2, 4);
        let x = [0.0f32, 1.0];
        let y: Vec<f32> = (0..4)
            .map(|i| m[i * 2] * x[0] + m[i * 2 + 1] * x[1])
            .collect();
        assert_eq!(y, vec![0.0, 0.5, 1.0, 1.0]);
        // Rows of the matrix sum to 1, so constants stay constant.
        let m = bilinear_matrix(7, 14);
        for r in m.chunks(7) {
            assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn resize_of_separable_map_is_separable() {
        let dev = Device::Cpu;
        let r = BilinearResize::new((7, 7), (14, 14), DType::F32, &dev).unwrap();
        let x = Tensor::ones((2, 3, 7, 7), DType::F32, &dev).unwrap();
        let y = r.forward(&x).unwrap();
        assert_eq!(y.dims(), &[2, 3, 14, 14]);
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|&a| (a - 1.0).abs() < 1e-6));
        // A ramp along rows stays a ramp along rows.
        let ramp = Tensor::arange(0f32, 7.0, &dev)
            .unwrap()
            .reshape((1, 1, 7, 1))
            .unwrap()
            .broadcast_as((1, 1, 7, 7))
            .unwrap()
            .contiguous()
            .unwrap();
        let y = r
            .forward(&ramp)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let rows: Vec<Vec<f32>> = y.to_vec2().unwrap();
        assert_eq!(rows[3][0], 1.5);
        assert_eq!(rows[3][13], 1.5);
        assert_eq!(rows[13][5], 6.0);
    }

    /// The sparse resize against the two dense products: to the bit for the decoder's
    /// 2x upsamplings (value and input gradient, f32 and f64, under a random output
    /// weighting), within rounding for a 5 -> 13 by 6 -> 4 resize whose weights'
    /// products are not exact.
    #[test]
    fn sparse_resize_equals_the_dense_products() {
        use candle_core::Var;
        let dev = Device::Cpu;
        for &(inp, out) in &[((7, 7), (14, 14)), ((14, 14), (28, 28)), ((5, 6), (13, 4))] {
            for dtype in [DType::F32, DType::F64] {
                let r = BilinearResize::new(inp, out, dtype, &dev).unwrap();
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(4);
                let shape = (3, 2, inp.0, inp.1);
                let x = crate::random::uniform(&mut rng, shape, -1.0, 1.0, dtype, &dev).unwrap();
                let wt = (3, 2, out.0, out.1);
                let wt = crate::random::uniform(&mut rng, wt, -1.0, 1.0, dtype, &dev).unwrap();
                let v = Var::from_tensor(&x).unwrap();
                let run = |f: &dyn Fn(&Tensor) -> Result<Tensor>| -> (Vec<f64>, Vec<f64>) {
                    let y = f(v.as_tensor()).unwrap();
                    let g = (&y * &wt).unwrap().sum_all().unwrap().backward().unwrap();
                    let flat = |t: &Tensor| -> Vec<f64> {
                        let t = t.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
                        t.to_vec1().unwrap()
                    };
                    (flat(&y), flat(g.get(v.as_tensor()).unwrap()))
                };
                let sparse = run(&|x| r.forward(x));
                let dense = run(&|x| r.forward_dense(x));
                let what = format!("{inp:?} -> {out:?} {dtype:?}");
                assert_eq!(sparse.0.len(), 3 * 2 * out.0 * out.1, "{what}");
                if out.0 == 2 * inp.0 && out.1 == 2 * inp.1 {
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&sparse.0), bits(&dense.0), "{what}: value");
                    assert_eq!(bits(&sparse.1), bits(&dense.1), "{what}: gradient");
                } else {
                    let tol = if dtype == DType::F32 { 1e-6 } else { 1e-14 };
                    for (a, b) in sparse
                        .0
                        .iter()
                        .zip(&dense.0)
                        .chain(sparse.1.iter().zip(&dense.1))
                    {
                        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: {a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_resize_refuses_maps_of_another_size() {
        let dev = Device::Cpu;
        let r = BilinearResize::new((7, 7), (14, 14), DType::F32, &dev).unwrap();
        let x = Tensor::zeros((1, 2, 8, 7), DType::F32, &dev).unwrap();
        let e = r.forward(&x).unwrap_err().to_string();
        assert!(e.contains("8 x 7") && e.contains("7 x 7"), "{e}");
    }

    #[test]
    fn max_pool_matches_candle_forward_and_has_the_right_gradient() {
        use candle_core::Var;
        let dev = Device::Cpu;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let x =
            crate::random::uniform(&mut rng, (2, 3, 6, 4), -1.0, 1.0, DType::F64, &dev).unwrap();
        let ours = max_pool(&x, 2).unwrap();
        let candle = x.max_pool2d(2).unwrap();
        let a: Vec<f64> = ours.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f64> = candle.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        // d sum(maxpool(x)) / dx is 1 at each window's maximum and 0 elsewhere.
        let v = Var::from_tensor(&x).unwrap();
        let g = max_pool(v.as_tensor(), 2)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<f64> = g
            .get(v.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(g.iter().filter(|&&v| v == 1.0).count(), a.len());
        assert_eq!(g.iter().filter(|&&v| v == 0.0).count(), g.len() - a.len());
    }

    #[test]
    fn softplus_is_stable() {
        let x = Tensor::new(&[-100f32, 0.0, 100.0], &Device::Cpu).unwrap();
        let y: Vec<f32> = softplus(&x).unwrap().to_vec1().unwrap();
        assert!(y[0] >= 0.0 && y[0] < 1e-30);
        assert!((y[1] - 2f32.ln()).abs() < 1e-6);
        assert!((y[2] - 100.0).abs() < 1e-4);
    }
}
