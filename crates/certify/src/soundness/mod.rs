//! Soundness of the bounds on small random networks, on fixtures shared by two files:
//! `sampled` (sampled points and PGD never beat a bound or cross a certified radius;
//! the batch entry points give each image what it gets alone) and `exact` (CROWN is
//! exact on linear networks and never looser than IBP; IBP agrees with plain
//! per-neuron interval arithmetic).

mod exact;
mod sampled;

use attacks::{Attack, PgdConfig, PgdL2, PgdLinf, Targeting};
use candle_core::{Device, Tensor};
use models::{Classifier, Layer};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{Network, Norm};

fn tensor(rng: &mut StdRng, shape: &[usize], scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn linear(rng: &mut StdRng, inp: usize, out: usize) -> Layer {
    let s = (3.0 / inp as f64).sqrt();
    Layer::Linear {
        weight: tensor(rng, &[out, inp], s),
        bias: tensor(rng, &[out], 0.3),
    }
}

fn conv(
    rng: &mut StdRng,
    inp: usize,
    out: usize,
    k: usize,
    stride: usize,
    padding: usize,
) -> Layer {
    let s = (3.0 / (inp * k * k) as f64).sqrt();
    Layer::Conv2d {
        weight: tensor(rng, &[out, inp, k, k], s),
        bias: tensor(rng, &[out], 0.3),
        stride,
        padding,
    }
}

/// One of three small random architectures: an MLP; conv (stride 1) / max-pool / conv
/// (stride 2, padding 1) / flatten / linear; conv (stride 2) / conv / global average
/// pooling / linear.
fn random_net(kind: usize, seed: u64) -> Network {
    let rng = &mut StdRng::seed_from_u64(seed);
    let (shape, layers): (Vec<usize>, Vec<Layer>) = match kind % 3 {
        0 => (
            vec![1, 3, 3],
            vec![
                Layer::Flatten,
                linear(rng, 9, 8),
                Layer::Relu,
                linear(rng, 8, 6),
                Layer::Relu,
                linear(rng, 6, 4),
            ],
        ),
        1 => (
            vec![1, 6, 6],
            vec![
                conv(rng, 1, 3, 3, 1, 1),
                Layer::Relu,
                Layer::MaxPool { k: 2 },
                conv(rng, 3, 4, 2, 2, 1),
                Layer::Relu,
                Layer::Flatten,
                linear(rng, 16, 4),
            ],
        ),
        _ => (
            vec![2, 5, 5],
            vec![
                conv(rng, 2, 4, 3, 2, 1),
                Layer::Relu,
                conv(rng, 4, 5, 3, 1, 1),
                Layer::Relu,
                Layer::GlobalAvgPool,
                linear(rng, 5, 4),
            ],
        ),
    };
    Network::from_layers(&shape, &layers).unwrap()
}

fn image(net: &Network, seed: u64) -> Tensor {
    let rng = &mut StdRng::seed_from_u64(seed);
    let v: Vec<f64> = (0..net.input_len()).map(|_| rng.random()).collect();
    Tensor::from_vec(v, net.input_shape(), &Device::Cpu).unwrap()
}

fn logits(net: &Network, x: &Tensor) -> Vec<Vec<f64>> {
    net.forward(x).unwrap().to_vec2().unwrap()
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// `count` points of the ball intersected with [0, 1] (uniform in the Linf box; for L2
/// a uniform direction at radius `eps u^(1/n)`, then clamped, which only moves closer),
/// half of them on the ball's surface or the box's corners where bounds are tight.
fn samples(x0: &Tensor, norm: Norm, eps: f64, count: usize, seed: u64) -> Tensor {
    let rng = &mut StdRng::seed_from_u64(seed);
    let c: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
    let n = c.len();
    let mut out = Vec::with_capacity(count * n);
    for s in 0..count {
        let edge = s % 2 == 0;
        let d: Vec<f64> = match norm {
            Norm::Linf if edge => (0..n)
                .map(|_| if rng.random::<bool>() { eps } else { -eps })
                .collect(),
            Norm::Linf => (0..n).map(|_| rng.random_range(-eps..=eps)).collect(),
            Norm::L2 => {
                let g: Vec<f64> = (0..n)
                    .map(|_| {
                        let (a, b): (f64, f64) = (rng.random(), rng.random());
                        (-2.0 * (1.0 - a).ln()).sqrt() * (std::f64::consts::TAU * b).cos()
                    })
                    .collect();
                let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                let r = if edge {
                    eps
                } else {
                    eps * rng.random::<f64>().powf(1.0 / n as f64)
                };
                g.iter().map(|v| v / norm * r).collect()
            }
        };
        out.extend(c.iter().zip(d).map(|(a, b)| (a + b).clamp(0.0, 1.0)));
    }
    let mut shape = vec![count];
    shape.extend_from_slice(x0.dims());
    Tensor::from_vec(out, shape.as_slice(), &Device::Cpu).unwrap()
}

/// Lets the attacks crate run PGD on a [`Network`].
struct AsClassifier<'a>(&'a Network);

impl Classifier for AsClassifier<'_> {
    fn logits(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        self.0
            .forward(images)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
    fn num_classes(&self) -> usize {
        self.0.num_classes()
    }
}

fn pgd(net: &Network, x0: &Tensor, class: usize, norm: Norm, eps: f64, seed: u64) -> Tensor {
    let config = PgdConfig {
        eps,
        step_size: eps / 10.0,
        steps: 50,
        random_start: true,
        restarts: 3,
        seed,
    };
    let x = x0.unsqueeze(0).unwrap();
    let labels = [class as u32];
    let out = match norm {
        Norm::Linf => PgdLinf(config).run(&AsClassifier(net), &x, &labels, &Targeting::Untargeted),
        Norm::L2 => PgdL2(config).run(&AsClassifier(net), &x, &labels, &Targeting::Untargeted),
    };
    out.unwrap().adversarial
}

/// Every point's margin `Z_class - Z_j` is at least its bound.
fn assert_margins_hold(net: &Network, points: &Tensor, class: usize, bounds: &crate::MarginBounds) {
    for z in logits(net, points) {
        for m in &bounds.margins {
            let actual = z[class] - z[m.other];
            assert!(
                actual >= m.lower - 1e-9,
                "margin {class}-{} is {actual}, below its bound {}",
                m.other,
                m.lower
            );
        }
    }
}
