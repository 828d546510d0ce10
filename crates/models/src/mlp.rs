//! `Mlp` 784-128-10, the weak f1 of the Type I paper.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::Dense;
use crate::params::{Architecture, ParamSpec};
use crate::traits::Classifier;

/// `fc1` 784 -> 128, ReLU, `fc2` 128 -> 10 (PyTorch: attributes fc1, fc2).
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Dense,
    fc2: Dense,
}

impl Architecture for Mlp {
    const KIND: &'static str = "mlp";

    fn param_specs() -> Vec<ParamSpec> {
        let mut specs = Dense::specs("fc1", 784, 128);
        specs.extend(Dense::specs("fc2", 128, 10));
        specs
    }

    fn from_varbuilder(vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: Dense::load(vb, "fc1", 784, 128)?,
            fc2: Dense::load(vb, "fc2", 128, 10)?,
        })
    }
}

impl Classifier for Mlp {
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let x = images.flatten_from(1)?;
        self.fc2.forward(&self.fc1.forward(&x)?.relu()?)
    }
}

impl crate::LayerSequence for Mlp {
    fn layers(&self) -> Vec<crate::Layer> {
        use crate::Layer;
        vec![
            Layer::Flatten,
            self.fc1.as_layer(),
            Layer::Relu,
            self.fc2.as_layer(),
        ]
    }
}
