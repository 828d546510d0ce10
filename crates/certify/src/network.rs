//! [`Network`]: a layer sequence checked for shapes, its weights as `f64` tensors on
//! the CPU, ready for bound propagation.

use candle_core::{DType, Device, Tensor, D};
use models::{Layer, LayerSequence};

use crate::error::{input, CertifyError, Result};

/// One checked layer. Affine layers also keep `|W|` (for IBP's radius) and `W²` (for
/// the L2 ball's first layer).
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Linear {
        w: Tensor,
        b: Tensor,
        w_abs: Tensor,
        w_sq: Tensor,
    },
    Conv {
        w: Tensor,
        b: Tensor,
        w_abs: Tensor,
        w_sq: Tensor,
        stride: usize,
        padding: usize,
    },
    Relu,
    MaxPool {
        k: usize,
    },
    GlobalAvgPool,
    Flatten,
}

impl Op {
    /// Affine in its input with a weight matrix (`Linear`, `Conv`).
    pub(crate) fn is_affine(&self) -> bool {
        matches!(self, Op::Linear { .. } | Op::Conv { .. })
    }

    /// Not linear: needs bounds on its input to be relaxed.
    pub(crate) fn is_nonlinear(&self) -> bool {
        matches!(self, Op::Relu | Op::MaxPool { .. })
    }
}

/// A feed-forward network as a checked sequence of layers (linear, conv2d, ReLU,
/// max-pool, global average pooling, flatten) on one input of a fixed shape, ending in
/// a vector of logits. Build it from a model ([`Network::from_model`]) or from layers
/// ([`Network::from_layers`]).
#[derive(Debug, Clone)]
pub struct Network {
    ops: Vec<Op>,
    /// `shapes[i]` is the input shape of layer `i`; the last is the logits' shape.
    shapes: Vec<Vec<usize>>,
}

fn layer_error(index: usize, kind: &'static str, reason: impl Into<String>) -> CertifyError {
    CertifyError::Layer {
        index,
        kind,
        reason: reason.into(),
    }
}

fn to_f64(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .contiguous()?)
}

impl Network {
    /// The network of a model that lists its layers (GapCnn, Mlp, Oracle).
    pub fn from_model<M: LayerSequence + ?Sized>(model: &M) -> Result<Self> {
        Self::from_layers(&model.input_shape(), &model.layers())
    }

    /// Checks that `layers` fit together on an input of `input_shape` (`C x H x W`, or
    /// a vector) and end in a vector of at least two logits.
    pub fn from_layers(input_shape: &[usize], layers: &[Layer]) -> Result<Self> {
        if input_shape.is_empty() || input_shape.contains(&0) {
            return Err(input(format!(
                "input shape {input_shape:?} must be non-empty with no zero dimension"
            )));
        }
        let mut shapes = vec![input_shape.to_vec()];
        let mut ops = Vec::with_capacity(layers.len());
        for (index, layer) in layers.iter().enumerate() {
            let shape = shapes.last().cloned().unwrap_or_default();
            let (op, out) = check_layer(index, layer, &shape)?;
            ops.push(op);
            shapes.push(out);
        }
        let out = shapes.last().cloned().unwrap_or_default();
        if out.len() != 1 || out[0] < 2 {
            return Err(input(format!(
                "the network must end in a vector of at least 2 logits, it ends in shape {out:?}"
            )));
        }
        Ok(Self { ops, shapes })
    }

    pub(crate) fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Input shape of layer `i` (`i == len()` gives the logits' shape).
    pub(crate) fn shape(&self, i: usize) -> &[usize] {
        &self.shapes[i]
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the network has no layer.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Shape of one input.
    pub fn input_shape(&self) -> &[usize] {
        &self.shapes[0]
    }

    /// Number of input values.
    pub fn input_len(&self) -> usize {
        self.shapes[0].iter().product()
    }

    /// Number of logits (classes).
    pub fn num_classes(&self) -> usize {
        self.shapes[self.ops.len()][0]
    }

    /// Logits of a batch `N x input_shape` (any float dtype, computed in `f64`), with
    /// plain candle ops: differentiable, and independent of the models' fast paths.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.to_dtype(DType::F64)?;
        for op in &self.ops {
            h = apply(op, &h, true)?;
        }
        Ok(h)
    }
}

/// Layer `op` on a batch `N x shape`; affine layers add their bias when `bias`.
pub(crate) fn apply(op: &Op, h: &Tensor, bias: bool) -> Result<Tensor> {
    apply_with(op, h, bias, false)
}

/// As [`apply`], with `|W|` in place of `W` for affine layers when `abs`.
pub(crate) fn apply_with(op: &Op, h: &Tensor, bias: bool, abs: bool) -> Result<Tensor> {
    Ok(match op {
        Op::Linear { w, b, w_abs, .. } => {
            let y = h.matmul(&(if abs { w_abs } else { w }).t()?)?;
            if bias {
                y.broadcast_add(b)?
            } else {
                y
            }
        }
        Op::Conv {
            w,
            b,
            w_abs,
            stride,
            padding,
            ..
        } => {
            let y = h.conv2d(if abs { w_abs } else { w }, *padding, *stride, 1, 1)?;
            if bias {
                y.broadcast_add(&b.reshape((1, (), 1, 1))?)?
            } else {
                y
            }
        }
        Op::Relu => h.relu()?,
        Op::MaxPool { k } => {
            let (n, c, hh, ww) = h.dims4()?;
            h.reshape((n, c, hh / k, *k, ww / k, *k))?.max(5)?.max(3)?
        }
        Op::GlobalAvgPool => h.mean(D::Minus1)?.mean(D::Minus1)?,
        Op::Flatten => h.flatten_from(1)?,
    })
}

fn check_layer(index: usize, layer: &Layer, shape: &[usize]) -> Result<(Op, Vec<usize>)> {
    let err = |kind, reason: String| layer_error(index, kind, reason);
    match layer {
        Layer::Linear { weight, bias } => {
            let (w, b) = (to_f64(weight)?, to_f64(bias)?);
            let (out, inp) = w
                .dims2()
                .map_err(|_| err("linear", format!("weight shape {:?} is not 2-D", w.dims())))?;
            if shape != [inp] {
                return Err(err(
                    "linear",
                    format!("takes a vector of {inp}, receives shape {shape:?}"),
                ));
            }
            if b.dims() != [out] {
                return Err(err(
                    "linear",
                    format!("bias shape {:?}, expected [{out}]", b.dims()),
                ));
            }
            let (w_abs, w_sq) = (w.abs()?, w.sqr()?);
            Ok((Op::Linear { w, b, w_abs, w_sq }, vec![out]))
        }
        Layer::Conv2d {
            weight,
            bias,
            stride,
            padding,
        } => {
            let (w, b) = (to_f64(weight)?, to_f64(bias)?);
            let (co, ci, kh, kw) = w
                .dims4()
                .map_err(|_| err("conv2d", format!("weight shape {:?} is not 4-D", w.dims())))?;
            let [c, h, wd] = shape else {
                return Err(err(
                    "conv2d",
                    format!("takes C x H x W, receives shape {shape:?}"),
                ));
            };
            if *c != ci || b.dims() != [co] || *stride == 0 {
                return Err(err(
                    "conv2d",
                    format!(
                        "weight {:?} and bias {:?} (stride {stride}) do not fit input {shape:?}",
                        w.dims(),
                        b.dims()
                    ),
                ));
            }
            if h + 2 * padding < kh || wd + 2 * padding < kw {
                return Err(err(
                    "conv2d",
                    format!("kernel {kh}x{kw} is larger than the padded input {shape:?}"),
                ));
            }
            let ho = (h + 2 * padding - kh) / stride + 1;
            let wo = (wd + 2 * padding - kw) / stride + 1;
            let (w_abs, w_sq) = (w.abs()?, w.sqr()?);
            let op = Op::Conv {
                w,
                b,
                w_abs,
                w_sq,
                stride: *stride,
                padding: *padding,
            };
            Ok((op, vec![co, ho, wo]))
        }
        Layer::Relu => Ok((Op::Relu, shape.to_vec())),
        Layer::MaxPool { k } => match shape {
            [c, h, w] if *k > 0 && h % k == 0 && w % k == 0 => {
                Ok((Op::MaxPool { k: *k }, vec![*c, h / k, w / k]))
            }
            _ => Err(err(
                "max-pool",
                format!("window {k} does not tile input shape {shape:?}"),
            )),
        },
        Layer::GlobalAvgPool => match shape {
            [c, _, _] => Ok((Op::GlobalAvgPool, vec![*c])),
            _ => Err(err(
                "global-average-pool",
                format!("takes C x H x W, receives shape {shape:?}"),
            )),
        },
        Layer::Flatten => Ok((Op::Flatten, vec![shape.iter().product()])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use models::{init_model, GapCnn, Mlp, Oracle};

    fn agrees<M: LayerSequence + models::Architecture>() {
        let dev = Device::Cpu;
        let (model, _) = init_model::<M>(3, DType::F32, &dev).unwrap();
        let net = Network::from_model(&model).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
        let x =
            models::random::uniform(&mut rng, (3, 1, 28, 28), 0.0, 1.0, DType::F32, &dev).unwrap();
        let ours: Vec<Vec<f64>> = net.forward(&x).unwrap().to_vec2().unwrap();
        let theirs: Vec<Vec<f32>> = model.logits(&x).unwrap().to_vec2().unwrap();
        for (a, b) in ours.iter().flatten().zip(theirs.iter().flatten()) {
            assert!((a - *b as f64).abs() < 1e-3 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn layer_sequences_compute_the_models_logits() {
        agrees::<Mlp>();
        agrees::<GapCnn>();
        agrees::<Oracle>();
    }

    #[test]
    fn misfitting_layers_are_named() {
        let w = Tensor::zeros((3, 5), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let layers = [Layer::Flatten, Layer::Linear { weight: w, bias: b }];
        let e = Network::from_layers(&[1, 2, 2], &layers).unwrap_err();
        assert!(e.to_string().contains("layer 1 (linear)"), "{e}");
        let e = Network::from_layers(&[1, 3, 3], &[Layer::MaxPool { k: 2 }]).unwrap_err();
        assert!(e.to_string().contains("layer 0 (max-pool)"), "{e}");
    }
}
