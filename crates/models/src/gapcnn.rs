//! `GapCnn`, the attacked classifier f1 whose CAM is studied: 3x3 convolutions ending in
//! a 128 x 7 x 7 map, global average pooling and one linear layer (no batch norm, so a
//! per-example gradient never depends on the rest of the batch).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{global_average_pool, Conv, ConvShape, Dense};
use crate::params::{Architecture, ParamSpec};
use crate::traits::{CamModel, Classifier, FeatureClassifier};

/// Channels of the five convolutions (conv1..conv5); conv5's count is K, the CAM depth.
pub const CHANNELS: [usize; 5] = [32, 32, 64, 64, 128];

fn conv_shapes() -> [ConvShape; 5] {
    let c = CHANNELS;
    [
        ConvShape::same(1, c[0], 3, 1),
        ConvShape::same(c[0], c[1], 3, 1),
        ConvShape::same(c[1], c[2], 3, 1),
        ConvShape::same(c[2], c[3], 3, 1),
        ConvShape::same(c[3], c[4], 3, 1),
    ]
}

/// conv1 32, conv2 32, max-pool 2, conv3 64, conv4 64, max-pool 2, conv5 128 (ReLU
/// after each, 3x3, padding 1), global average pooling, `fc` 128 -> 10. PyTorch
/// equivalent: the same names in an `nn.Module` with attributes conv1..conv5 and fc.
#[derive(Debug, Clone)]
pub struct GapCnn {
    convs: Vec<Conv>,
    fc: Dense,
}

impl Architecture for GapCnn {
    const KIND: &'static str = "gapcnn";

    fn param_specs() -> Vec<ParamSpec> {
        let mut specs: Vec<ParamSpec> = conv_shapes()
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.specs(&format!("conv{}", i + 1)))
            .collect();
        specs.extend(Dense::specs("fc", CHANNELS[4], 10));
        specs
    }

    fn from_varbuilder(vb: &VarBuilder) -> Result<Self> {
        let convs = conv_shapes()
            .iter()
            .enumerate()
            .map(|(i, s)| Conv::load(vb, &format!("conv{}", i + 1), *s))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            convs,
            fc: Dense::load(vb, "fc", CHANNELS[4], 10)?,
        })
    }
}

impl GapCnn {
    /// The last feature maps (`N x 128 x 7 x 7`, after ReLU), before pooling.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        if fastconv::prefers_channels_last(x) {
            return self.features_nhwc(x)?.permute((0, 3, 1, 2))?.contiguous();
        }
        self.layers(x.clone(), false)
    }

    /// conv1..conv5 with their ReLUs and pools, on a batch channels-first or
    /// channels-last; channels-last, conv1 and conv2 run as one op, as do conv3 and
    /// conv4 (see [`Conv::forward_pair_relu_pool_nhwc`]).
    fn layers(&self, mut h: Tensor, channels_last: bool) -> Result<Tensor> {
        let c = &self.convs;
        if channels_last {
            let h = c[0].forward_pair_relu_pool_nhwc(&c[1], &h, 2)?;
            let h = c[2].forward_pair_relu_pool_nhwc(&c[3], &h, 2)?;
            return c[4].forward_relu_nhwc(&h);
        }
        for (i, conv) in c.iter().enumerate() {
            h = if i == 1 || i == 3 {
                conv.forward_relu_pool(&h, 2)?
            } else {
                conv.forward_relu(&h)?
            };
        }
        Ok(h)
    }

    /// The last feature maps channels-last (`N x 7 x 7 x 128`), computed channels-last
    /// throughout: the layout of the fast CPU path with Winograd, where no layer
    /// transposes its input or output (see [`fastconv::conv2d_nhwc`]). `logits` and
    /// `features` take it where [`fastconv::prefers_channels_last`] says so.
    pub fn features_nhwc(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        // One channel: the same values in the same order.
        let h = if c == 1 {
            x.reshape((n, h, w, 1))?
        } else {
            x.permute((0, 2, 3, 1))?
        };
        self.layers(h, true)
    }
}

impl Classifier for GapCnn {
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        if fastconv::prefers_channels_last(images) {
            let pooled = fastconv::global_average_pool_nhwc(&self.features_nhwc(images)?)?;
            return self.fc.forward(&pooled);
        }
        self.logits_from_features(&self.features(images)?)
    }
}

impl FeatureClassifier for GapCnn {
    fn features_and_logits(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        let f = self.features(images)?;
        let logits = self.logits_from_features(&f)?;
        Ok((f, logits))
    }

    fn logits_from_features(&self, features: &Tensor) -> Result<Tensor> {
        self.fc.forward(&global_average_pool(features)?)
    }
}

impl CamModel for GapCnn {
    fn head(&self) -> (&Tensor, &Tensor) {
        (self.fc.weight(), self.fc.bias())
    }
}

impl crate::LayerSequence for GapCnn {
    /// conv1..conv5 each with ReLU (a 2x2 max-pool after conv2 and conv4), global
    /// average pooling, fc: the order of [`GapCnn::features`] then the head.
    fn layers(&self) -> Vec<crate::Layer> {
        use crate::Layer;
        let mut out = Vec::new();
        for (i, conv) in self.convs.iter().enumerate() {
            out.push(conv.as_layer());
            out.push(Layer::Relu);
            if i == 1 || i == 3 {
                out.push(Layer::MaxPool { k: 2 });
            }
        }
        out.push(Layer::GlobalAvgPool);
        out.push(self.fc.as_layer());
        out
    }
}
