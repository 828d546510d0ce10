//! The oracle: an independent classifier of another architecture (5x5 convolutions and
//! a wide dense layer), used only to judge what an image "is". It is never the model
//! a Type I attack attacks.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{Conv, ConvShape, Dense};
use crate::params::{Architecture, ParamSpec};
use crate::traits::Classifier;

const CONV1: ConvShape = ConvShape {
    inp: 1,
    out: 32,
    k: 5,
    stride: 1,
    padding: 2,
};
const CONV2: ConvShape = ConvShape {
    inp: 32,
    out: 64,
    k: 5,
    stride: 1,
    padding: 2,
};
const HIDDEN: usize = 256;

/// conv1 5x5 32, max-pool 2, conv2 5x5 64, max-pool 2, `fc1` 3136 -> 256, `fc2` 256 -> 10
/// (ReLU after each hidden layer).
#[derive(Debug, Clone)]
pub struct Oracle {
    conv1: Conv,
    conv2: Conv,
    fc1: Dense,
    fc2: Dense,
}

impl Architecture for Oracle {
    const KIND: &'static str = "oracle";

    fn param_specs() -> Vec<ParamSpec> {
        let mut specs = CONV1.specs("conv1");
        specs.extend(CONV2.specs("conv2"));
        specs.extend(Dense::specs("fc1", 64 * 7 * 7, HIDDEN));
        specs.extend(Dense::specs("fc2", HIDDEN, 10));
        specs
    }

    fn from_varbuilder(vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            conv1: Conv::load(vb, "conv1", CONV1)?,
            conv2: Conv::load(vb, "conv2", CONV2)?,
            fc1: Dense::load(vb, "fc1", 64 * 7 * 7, HIDDEN)?,
            fc2: Dense::load(vb, "fc2", HIDDEN, 10)?,
        })
    }
}

impl Classifier for Oracle {
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward_relu_pool(images, 2)?;
        let h = self.conv2.forward_relu_pool(&h, 2)?;
        let h = self.fc1.forward(&h.flatten_from(1)?)?.relu()?;
        self.fc2.forward(&h)
    }
}

impl crate::LayerSequence for Oracle {
    fn layers(&self) -> Vec<crate::Layer> {
        use crate::Layer;
        vec![
            self.conv1.as_layer(),
            Layer::Relu,
            Layer::MaxPool { k: 2 },
            self.conv2.as_layer(),
            Layer::Relu,
            Layer::MaxPool { k: 2 },
            Layer::Flatten,
            self.fc1.as_layer(),
            Layer::Relu,
            self.fc2.as_layer(),
        ]
    }
}
