//! The supervised VAE of Tang et al. (TPAMI 2019), as ALGORITHMS.md section 3 gives it:
//! an encoder q(z|x), a decoder p(x|z) with differentiable bilinear resizes, a latent
//! classifier f2 = p(y|z) and a latent discriminator D(z). `dim_z = 32`, ELU activations,
//! Xavier init, "same" padding (PyTorch-style symmetric padding 1 for the stride-2 convs).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{softplus, BilinearResize, Conv, ConvShape, Dense};
use crate::params::{Architecture, ParamSpec};

/// Size of the latent code.
pub const DIM_Z: usize = 32;

const ENC_CONVS: [ConvShape; 4] = [
    ConvShape {
        inp: 1,
        out: 16,
        k: 3,
        stride: 1,
        padding: 1,
    },
    ConvShape {
        inp: 16,
        out: 32,
        k: 3,
        stride: 2,
        padding: 1,
    },
    ConvShape {
        inp: 32,
        out: 32,
        k: 3,
        stride: 1,
        padding: 1,
    },
    ConvShape {
        inp: 32,
        out: 64,
        k: 3,
        stride: 2,
        padding: 1,
    },
];
const DEC_CONVS: [ConvShape; 4] = [
    ConvShape {
        inp: 64,
        out: 32,
        k: 3,
        stride: 1,
        padding: 1,
    },
    ConvShape {
        inp: 32,
        out: 32,
        k: 3,
        stride: 1,
        padding: 1,
    },
    ConvShape {
        inp: 32,
        out: 16,
        k: 3,
        stride: 1,
        padding: 1,
    },
    ConvShape {
        inp: 16,
        out: 1,
        k: 3,
        stride: 1,
        padding: 1,
    },
];
const F2: [usize; 4] = [DIM_Z, 256, 128, 10];
const DISC: [usize; 5] = [DIM_Z, 256, 128, 64, 1];

fn dense_stack(vb: &VarBuilder, prefix: &str, sizes: &[usize]) -> Result<Vec<Dense>> {
    sizes
        .windows(2)
        .enumerate()
        .map(|(i, w)| Dense::load(vb, &format!("{prefix}.fc{}", i + 1), w[0], w[1]))
        .collect()
}

fn dense_stack_specs(prefix: &str, sizes: &[usize]) -> Vec<ParamSpec> {
    sizes
        .windows(2)
        .enumerate()
        .flat_map(|(i, w)| Dense::xavier_specs(&format!("{prefix}.fc{}", i + 1), w[0], w[1]))
        .collect()
}

/// ELU hidden layers, the last layer linear.
fn forward_stack(layers: &[Dense], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for (i, layer) in layers.iter().enumerate() {
        h = layer.forward(&h)?;
        if i + 1 < layers.len() {
            h = fastconv::elu(&h)?;
        }
    }
    Ok(h)
}

/// The supervised VAE with its latent classifier and discriminator.
#[derive(Debug, Clone)]
pub struct Svae {
    enc_convs: Vec<Conv>,
    enc_fc1: Dense,
    enc_fc2: Dense,
    dec_fc1: Dense,
    dec_fc2: Dense,
    dec_convs: Vec<Conv>,
    up14: BilinearResize,
    up28: BilinearResize,
    f2: Vec<Dense>,
    disc: Vec<Dense>,
}

impl Architecture for Svae {
    const KIND: &'static str = "svae";

    fn param_specs() -> Vec<ParamSpec> {
        let mut s = Vec::new();
        for (i, c) in ENC_CONVS.iter().enumerate() {
            s.extend(c.xavier_specs(&format!("encoder.conv{}", i + 1)));
        }
        s.extend(Dense::xavier_specs("encoder.fc1", 64 * 7 * 7, 128));
        s.extend(Dense::xavier_specs("encoder.fc2", 128, 2 * DIM_Z));
        s.extend(Dense::xavier_specs("decoder.fc1", DIM_Z, 128));
        s.extend(Dense::xavier_specs("decoder.fc2", 128, 64 * 7 * 7));
        for (i, c) in DEC_CONVS.iter().enumerate() {
            s.extend(c.xavier_specs(&format!("decoder.conv{}", i + 1)));
        }
        s.extend(dense_stack_specs("latent_classifier", &F2));
        s.extend(dense_stack_specs("discriminator", &DISC));
        s
    }

    fn from_varbuilder(vb: &VarBuilder) -> Result<Self> {
        let convs = |prefix: &str, shapes: &[ConvShape]| {
            shapes
                .iter()
                .enumerate()
                .map(|(i, c)| Conv::load(vb, &format!("{prefix}.conv{}", i + 1), *c))
                .collect::<Result<Vec<_>>>()
        };
        Ok(Self {
            enc_convs: convs("encoder", &ENC_CONVS)?,
            enc_fc1: Dense::load(vb, "encoder.fc1", 64 * 7 * 7, 128)?,
            enc_fc2: Dense::load(vb, "encoder.fc2", 128, 2 * DIM_Z)?,
            dec_fc1: Dense::load(vb, "decoder.fc1", DIM_Z, 128)?,
            dec_fc2: Dense::load(vb, "decoder.fc2", 128, 64 * 7 * 7)?,
            dec_convs: convs("decoder", &DEC_CONVS)?,
            up14: BilinearResize::new((7, 7), (14, 14), vb.dtype(), vb.device())?,
            up28: BilinearResize::new((14, 14), (28, 28), vb.dtype(), vb.device())?,
            f2: dense_stack(vb, "latent_classifier", &F2)?,
            disc: dense_stack(vb, "discriminator", &DISC)?,
        })
    }
}

/// The parameters of each part, by state-dict prefix, for training one part alone.
pub fn part_names(prefixes: &[&str]) -> Vec<String> {
    Svae::param_specs()
        .into_iter()
        .map(|s| s.name)
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
        .collect()
}

impl Svae {
    /// q(z|x): mean and standard deviation (`1e-6 + softplus`), each `N x 32`, for binarised
    /// images `N x 1 x 28 x 28`.
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut h = x.clone();
        for conv in &self.enc_convs {
            h = conv.forward_elu(&h)?;
        }
        let h = self.enc_fc1.forward(&h.flatten_from(1)?)?.tanh()?;
        let out = self.enc_fc2.forward(&h)?;
        let mu = out.narrow(1, 0, DIM_Z)?;
        let sigma = (softplus(&out.narrow(1, DIM_Z, DIM_Z)?)? + 1e-6)?;
        Ok((mu, sigma))
    }

    /// Decoder logits (before the sigmoid), `N x 1 x 28 x 28`.
    pub fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        let n = z.dim(0)?;
        let h = fastconv::elu(&self.dec_fc1.forward(z)?)?;
        let h = fastconv::elu(&self.dec_fc2.forward(&h)?)?.reshape((n, 64, 7, 7))?;
        let h = self.up14.forward(&h)?;
        let h = self.dec_convs[0].forward_elu(&h)?;
        let h = self.dec_convs[1].forward_elu(&h)?;
        let h = self.up28.forward(&h)?;
        let h = self.dec_convs[2].forward_elu(&h)?;
        self.dec_convs[3].forward(&h)
    }

    /// G(z): decoded images in (0, 1), `N x 1 x 28 x 28`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        candle_nn::ops::sigmoid(&self.decode_logits(z)?)
    }

    /// f2(z): latent-classifier logits, `N x 10`.
    pub fn classify_latent(&self, z: &Tensor) -> Result<Tensor> {
        forward_stack(&self.f2, z)
    }

    /// D(z): discriminator logit, `N x 1` (high: looks like a code of q(z|x)).
    pub fn discriminate(&self, z: &Tensor) -> Result<Tensor> {
        forward_stack(&self.disc, z)
    }
}
