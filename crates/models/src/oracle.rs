//! The oracle: an independent classifier of another architecture (5x5 convolutions and
//! a wide dense layer), used only to judge what an image "is". It is never the model
//! a Type I attack attacks.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{Conv, ConvShape, Dense};
use crate::params::{Architecture, ParamSpec};
use crate::traits::{Classifier, FeatureClassifier};

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

impl Oracle {
    /// The output of the last convolution block, `N x 64 x 7 x 7`: conv2 after its
    /// ReLU and its 2 x 2 max-pool, the map Grad-CAM and its variants weight.
    ///
    /// After the pool, as pytorch-grad-cam hooks a VGG-like network
    /// (`model.features[-1]`, the last max-pool): this is the map the dense head
    /// reads, so the head is exactly [`FeatureClassifier::logits_from_features`] and
    /// the logits stay those of [`Classifier::logits`] bit for bit (conv, ReLU and pool
    /// are one fused op here, whose inner maps are not nodes of candle's graph). It
    /// is also the 7 x 7 grid of `GapCnn`'s features, so maps of both models compare
    /// directly; the 14 x 14 map before the pool would give gradients that are zero
    /// at three positions of every four (a max-pool routes to its maximum only).
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward_relu_pool(images, 2)?;
        self.conv2.forward_relu_pool(&h, 2)
    }
}

impl Classifier for Oracle {
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        self.logits_from_features(&self.features(images)?)
    }
}

/// Features: [`Oracle::features`]; the head: flatten, `fc1`, ReLU, `fc2`. No global
/// average pooling, so CAM does not apply but the Grad-CAM family does.
impl FeatureClassifier for Oracle {
    fn features_and_logits(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        let features = self.features(images)?;
        let logits = self.logits_from_features(&features)?;
        Ok((features, logits))
    }

    fn logits_from_features(&self, features: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(&features.flatten_from(1)?)?.relu()?;
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

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};
    use rand::{rngs::StdRng, SeedableRng};

    use super::*;
    use crate::params::init_model;
    use crate::random::uniform;

    fn images(n: usize) -> Tensor {
        let mut rng = StdRng::seed_from_u64(4);
        uniform(&mut rng, (n, 1, 28, 28), 0.0, 1.0, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn oracle_head_on_its_features_gives_its_logits_exactly() {
        let (model, _) = init_model::<Oracle>(0, DType::F32, &Device::Cpu).unwrap();
        let x = images(3);
        let logits: Vec<Vec<f32>> = model.logits(&x).unwrap().to_vec2().unwrap();
        let (features, paired) = model.features_and_logits(&x).unwrap();
        assert_eq!(features.dims(), &[3, 64, 7, 7]);
        let from_features: Vec<Vec<f32>> = model
            .logits_from_features(&features)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(from_features, logits);
        assert_eq!(paired.to_vec2::<f32>().unwrap(), logits);
    }

    #[test]
    fn oracle_logits_are_differentiable_in_its_features() {
        let (model, _) = init_model::<Oracle>(1, DType::F32, &Device::Cpu).unwrap();
        let features = Var::from_tensor(&model.features(&images(2)).unwrap()).unwrap();
        let logits = model.logits_from_features(features.as_tensor()).unwrap();
        let grads = logits
            .narrow(1, 3, 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = grads
            .get(features.as_tensor())
            .expect("a gradient for the features");
        assert_eq!(g.dims(), &[2, 64, 7, 7]);
        let size = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(size > 0.0);
    }
}
