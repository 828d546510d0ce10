//! [`conv2d_pair_relu_pool_nhwc`]: two convolutions with ReLU, the second max-pooled,
//! as one op that keeps the first layer's output for its own backward pass.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::conv2d::{conv2d_nhwc, ConvForward};
use super::conv2d_relu_pool::conv2d_relu_pool_nhwc;
use super::relu_backward::{backward_through_relu, Pooling};
use super::{batch_shape, dims4, geometry_of, nchw, record, slice, Dims4, Same, Wanted};
use crate::kernels::Geometry;
use crate::options::{Activation, BatchLayout, ConvLayer, ConvOptions};
use crate::passes::forward::{forward, forward_pooled, pools_whole_windows};
use crate::switch::runs_fast;

/// Two convolutions with ReLU, the second max-pooled over `window x window` windows, on a
/// channels-last batch: [`conv2d_nhwc`] then [`conv2d_relu_pool_nhwc`] as one op.
///
/// The first convolution's output stays inside the op, for its backward pass, instead
/// of becoming a node of candle's graph. candle 0.11's backward allocates a zero
/// tensor for every node and adds the node's gradient to it; for GapCnn's conv1 at
/// batch 128 that is a 13 MB fill and a 13 MB addition per training step, which this
/// op saves. Values and gradients are those of the two ops. Off the fast path, or
/// where the second layer does not pool in Winograd (see [`conv2d_relu_pool_nhwc`]),
/// this runs the two ops.
pub fn conv2d_pair_relu_pool_nhwc(
    x: &Tensor,
    first: ConvLayer<'_>,
    second: ConvLayer<'_>,
    window: usize,
) -> Result<Tensor> {
    let (w1, b1, o1) = (first.weight, first.bias, first.options);
    let (w2, b2, o2) = (second.weight, second.bias, second.options);
    let k = window;
    let dtype = x.dtype();
    let native = runs_fast(x)
        && [w1, b1, w2, b2].iter().all(|t| t.dtype() == dtype)
        && (|| pair_geometry(x.dims4()?, (w1.dims4()?, o1), (w2.dims4()?, o2)))()
            .is_ok_and(|(_, g2)| pools_whole_windows(&g2, k));
    if !native {
        let y1 = conv2d_nhwc(x, w1, b1, o1, Activation::Relu)?;
        return conv2d_relu_pool_nhwc(&y1, w2, b2, o2, k);
    }
    let layer = |options| ConvForward::new(options, Activation::Relu, BatchLayout::ChannelsLast);
    let op = PairForward {
        layers: [layer(o1), layer(o2)],
        kernels: [w1.dims4()?, w2.dims4()?],
        k,
        saved: std::sync::Mutex::new(None),
    };
    // Each layer's kernel and bias as one flat `W | b` argument, the layout of the
    // backward passes' weight gradients.
    let flat = |w: &Tensor, b: &Tensor| Tensor::cat(&[&w.flatten_all()?, &b.flatten_all()?], 0);
    x.contiguous()?
        .apply_op3(&flat(w1, b1)?, &flat(w2, b2)?, op)
}

/// The geometries of the two layers of [`conv2d_pair_relu_pool_nhwc`] on a
/// channels-last batch of dims `x`, from each layer's kernel dims and options.
fn pair_geometry(
    x: Dims4,
    (w1, o1): (Dims4, ConvOptions),
    (w2, o2): (Dims4, ConvOptions),
) -> Result<(Geometry, Geometry)> {
    let g1 = geometry_of(nchw(x, BatchLayout::ChannelsLast), w1, o1)?;
    let g2 = geometry_of((g1.n, g1.c_out, g1.ho, g1.wo), w2, o2)?;
    Ok((g1, g2))
}

/// The op of [`conv2d_pair_relu_pool_nhwc`]: (input, flat `W1 | b1`, flat `W2 | b2`).
struct PairForward {
    layers: [ConvForward; 2],
    kernels: [Dims4; 2],
    k: usize,
    /// The first layer's output and the pooling record, from the forward pass.
    saved: std::sync::Mutex<Option<(Tensor, std::sync::Arc<Vec<u8>>)>>,
}

impl PairForward {
    fn geometry(&self, x: &Layout) -> Result<(Geometry, Geometry)> {
        let [l1, l2] = self.layers;
        let (g1, g2) = pair_geometry(
            dims4(x, "input")?,
            (self.kernels[0], l1.options),
            (self.kernels[1], l2.options),
        )?;
        let k = self.k;
        if !pools_whole_windows(&g2, k) {
            candle_core::bail!(
                "fast conv2d pair: the second layer does not pool {k}x{k} in Winograd"
            );
        }
        Ok((g1, g2))
    }

    /// The first layer's output and the pooling record.
    fn saved(&self) -> Result<(Tensor, std::sync::Arc<Vec<u8>>)> {
        record(&self.saved, "conv2d pair")?.clone().ok_or_else(|| {
            candle_core::Error::Msg("fast conv2d pair: backward before forward".into())
        })
    }

    /// A layer's kernel, `C_out x C_in x k x k`, from its flat `W | b`.
    fn kernel(&self, layer: usize, flat: &Tensor) -> Result<Tensor> {
        let (o, i, kh, kw) = self.kernels[layer];
        flat.narrow(0, 0, o * i * kh * kw)?.reshape((o, i, kh, kw))
    }
}

/// Checks that `flat` holds a layer's `W | b`.
fn check_flat(l: &Layout, g: &Geometry, what: &str) -> Result<()> {
    if l.shape().dims() != [g.c_out * g.ckk() + g.c_out] {
        candle_core::bail!(
            "fast conv2d pair: the {what} has shape {:?}, not the {} values of W | b",
            l.shape(),
            g.c_out * g.ckk() + g.c_out
        );
    }
    Ok(())
}

impl CustomOp3 for PairForward {
    fn name(&self) -> &'static str {
        "fast-conv2d-pair-relu-pool"
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
        let (g1, g2) = self.geometry(l1)?;
        check_flat(l2, &g1, "first layer's parameters")?;
        check_flat(l3, &g2, "second layer's parameters")?;
        let k = self.k;
        /// (first output, pooled second output, pooling record).
        type Outputs<T> = (Tensor, Vec<T>, Vec<u8>);
        fn run<T: Same + candle_core::WithDType>(
            (g1, g2): (&Geometry, &Geometry),
            k: usize,
            x: &[T],
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> Result<Outputs<T>> {
            let (w1, b1) =
                T::same(s2, l2, "first layer's parameters")?.split_at(g1.c_out * g1.ckk());
            let (w2, b2) =
                T::same(s3, l3, "second layer's parameters")?.split_at(g2.c_out * g2.ckk());
            let (relu, layout) = (Activation::Relu, BatchLayout::ChannelsLast);
            let y1 = forward(g1, x, w1, Some(b1), relu, layout);
            let (y2, codes) = forward_pooled(g2, &y1, (w2, b2), k, layout);
            let first = batch_shape((g1.n, g1.c_out, g1.ho, g1.wo), layout);
            Ok((
                Tensor::from_vec(y1, first, &candle_core::Device::Cpu)?,
                y2,
                codes,
            ))
        }
        // Three outputs, where `with_dtype!` takes one: the match is spelled out.
        let args = ((&g1, &g2), k, (s2, l2), (s3, l3));
        let (y1, y2, codes) = match s1 {
            CpuStorage::F32(x) => {
                let (y1, y2, codes) = run(args.0, k, slice(x, l1, "input")?, args.2, args.3)?;
                (y1, CpuStorage::F32(y2), codes)
            }
            CpuStorage::F64(x) => {
                let (y1, y2, codes) = run(args.0, k, slice(x, l1, "input")?, args.2, args.3)?;
                (y1, CpuStorage::F64(y2), codes)
            }
            other => candle_core::bail!("fast conv2d pair: unsupported dtype {:?}", other.dtype()),
        };
        *record(&self.saved, "conv2d pair")? = Some((y1, std::sync::Arc::new(codes)));
        Ok((
            y2,
            batch_shape(
                (g2.n, g2.c_out, g2.ho / k, g2.wo / k),
                BatchLayout::ChannelsLast,
            ),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        flat1: &Tensor,
        flat2: &Tensor,
        y2: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (y1, codes) = self.saved()?;
        let grad = grad.contiguous()?;
        let (w1, w2) = (self.kernel(0, flat1)?, self.kernel(1, flat2)?);
        let want1 = Wanted {
            input: x.track_op(),
            weights: flat1.track_op(),
        };
        // The first layer's output gradient is needed for either of its gradients.
        let want2 = Wanted {
            input: want1.input || want1.weights,
            weights: flat2.track_op(),
        };
        let (padding, layout) = (self.layers[1].options.padding, BatchLayout::ChannelsLast);
        let pooled = Pooling { k: self.k, codes };
        let (dy1, dflat2) =
            backward_through_relu((&y1, &w2), y2, &grad, padding, layout, pooled, want2)?;
        let (dx, dflat1) = match dy1 {
            Some(dy1) => self.layers[0].backward(x, &w1, &y1, &dy1, want1)?,
            None => (None, None),
        };
        Ok((dx, dflat1, dflat2))
    }
}
