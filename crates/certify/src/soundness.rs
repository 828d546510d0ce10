//! Soundness of the bounds on small random networks: sampled points and PGD never beat
//! a bound; CROWN is never looser than IBP; CROWN is exact on linear networks; IBP
//! agrees with plain per-neuron interval arithmetic.

use attacks::{Attack, PgdConfig, PgdL2, PgdLinf, Targeting};
use candle_core::{Device, Tensor};
use models::{Classifier, Layer};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{
    certified_radius, layer_intervals, margin_bounds, Method, Network, Norm, RadiusSearch, Region,
};

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// At a random radius, sampled points and PGD's results keep every margin above its
    /// IBP and CROWN bound, every intermediate value inside its interval, and CROWN's
    /// bounds (intermediate and final) are never looser than IBP's.
    #[test]
    fn bounds_hold_and_crown_is_never_looser(
        kind in 0usize..3, seed in 0u64..1000, eps in 0.0f64..0.3, l2 in any::<bool>()
    ) {
        let net = random_net(kind, seed);
        let x0 = image(&net, seed + 1);
        let norm = if l2 { Norm::L2 } else { Norm::Linf };
        // PGD needs a positive radius; the bounds are computed at the same one.
        let eps = if l2 { 3.0 * eps } else { eps }.max(1e-6);
        let class = argmax(&logits(&net, &x0.unsqueeze(0).unwrap())[0]);
        let ibp = margin_bounds(&net, &x0, class, norm, eps, Method::Ibp).unwrap();
        let crown = margin_bounds(&net, &x0, class, norm, eps, Method::crown()).unwrap();
        let points = samples(&x0, norm, eps, 200, seed + 2);
        assert_margins_hold(&net, &points, class, &ibp);
        assert_margins_hold(&net, &points, class, &crown);
        for (c, i) in crown.margins.iter().zip(&ibp.margins) {
            // Equal up to rounding where CROWN's intermediate bounds did not help.
            prop_assert!(c.lower >= i.lower - 1e-12 * (1.0 + i.lower.abs()), "CROWN {} looser than IBP {}", c.lower, i.lower);
        }
        let adv = pgd(&net, &x0, class, norm, eps, seed);
        assert_margins_hold(&net, &adv, class, &crown);

        // Intermediate intervals: contain every sampled point's values; CROWN's inside IBP's.
        let region = Region::new(&net, &x0, norm, eps).unwrap();
        let iv_ibp = layer_intervals(&net, &region, Method::Ibp).unwrap();
        let iv_crown = layer_intervals(&net, &region, Method::crown()).unwrap();
        let mut h = points.clone();
        for (i, op) in net.ops().iter().enumerate() {
            h = crate::network::apply(op, &h, true).unwrap();
            let values: Vec<f64> = h.flatten_all().unwrap().to_vec1().unwrap();
            let (cl, cu) = iv_crown[i + 1].to_vecs().unwrap();
            let (il, iu) = iv_ibp[i + 1].to_vecs().unwrap();
            for (t, v) in values.iter().enumerate() {
                let j = t % cl.len();
                prop_assert!(cl[j] - 1e-9 <= *v && *v <= cu[j] + 1e-9, "layer {i} value {v} outside [{}, {}]", cl[j], cu[j]);
                prop_assert!(cl[j] >= il[j] - 1e-12 && cu[j] <= iu[j] + 1e-12);
            }
        }
    }

    /// Inside the certified radius, no sampled point and no PGD result changes the class.
    #[test]
    fn nothing_inside_the_certified_radius_changes_the_class(
        kind in 0usize..3, seed in 0u64..1000, l2 in any::<bool>()
    ) {
        let net = random_net(kind, seed);
        let x0 = image(&net, seed + 7);
        let norm = if l2 { Norm::L2 } else { Norm::Linf };
        let class = argmax(&logits(&net, &x0.unsqueeze(0).unwrap())[0]);
        let search = RadiusSearch::default_for(norm, net.input_len());
        let ibp = certified_radius(&net, &x0, class, norm, Method::Ibp, search).unwrap();
        let crown = certified_radius(&net, &x0, class, norm, Method::crown(), search).unwrap();
        prop_assert!(crown.certified_at_zero);
        prop_assert!(crown.not_certified >= ibp.radius);
        prop_assert!(crown.not_certified - crown.radius <= search.width(crown.radius));
        let r = crown.radius;
        let mut points = vec![samples(&x0, norm, r, 300, seed + 8)];
        if r > 0.0 {
            points.push(pgd(&net, &x0, class, norm, r, seed));
        }
        for p in points {
            for z in logits(&net, &p) {
                prop_assert_eq!(argmax(&z), class);
            }
        }
    }
}

/// The affine map `x -> M x + m` of a network without nonlinear layers, read off by
/// evaluating it at 0 and at every basis vector.
fn affine_map(net: &Network) -> (Vec<Vec<f64>>, Vec<f64>) {
    let n = net.input_len();
    let mut basis = vec![0.0; (n + 1) * n];
    for i in 0..n {
        basis[(i + 1) * n + i] = 1.0;
    }
    let mut shape = vec![n + 1];
    shape.extend_from_slice(net.input_shape());
    let x = Tensor::from_vec(basis, shape.as_slice(), &Device::Cpu).unwrap();
    let z = logits(net, &x);
    let m = z[0].clone();
    let cols = z[1..]
        .iter()
        .map(|zi| zi.iter().zip(&m).map(|(a, b)| a - b).collect())
        .collect();
    (cols, m)
}

#[test]
fn crown_is_exact_on_linear_networks() {
    for seed in 0..6 {
        let rng = &mut StdRng::seed_from_u64(seed);
        let (shape, layers) = if seed % 2 == 0 {
            (
                vec![1, 3, 3],
                vec![
                    Layer::Flatten,
                    linear(rng, 9, 7),
                    linear(rng, 7, 5),
                    linear(rng, 5, 4),
                ],
            )
        } else {
            (
                vec![2, 5, 5],
                vec![
                    conv(rng, 2, 3, 3, 2, 1),
                    conv(rng, 3, 4, 2, 1, 0),
                    Layer::GlobalAvgPool,
                    linear(rng, 4, 4),
                ],
            )
        };
        let net = Network::from_layers(&shape, &layers).unwrap();
        let (cols, m) = affine_map(&net);
        let x0 = image(&net, seed + 100);
        let c: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
        for (norm, eps) in [(Norm::Linf, 0.2), (Norm::L2, 0.7)] {
            let b = margin_bounds(&net, &x0, 1, norm, eps, Method::crown()).unwrap();
            for mg in &b.margins {
                // Row r of the margin: M_1 - M_j, minimised over the set in closed form.
                let r: Vec<f64> = cols.iter().map(|col| col[1] - col[mg.other]).collect();
                let base = m[1] - m[mg.other];
                let exact = match norm {
                    Norm::Linf => {
                        base + r
                            .iter()
                            .zip(&c)
                            .map(|(ri, ci)| {
                                let (lo, hi) = ((ci - eps).max(0.0), (ci + eps).min(1.0));
                                (ri * lo).min(ri * hi)
                            })
                            .sum::<f64>()
                    }
                    // The ball without the box: what CROWN's dual norm bounds.
                    Norm::L2 => {
                        base + r.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>()
                            - eps * r.iter().map(|a| a * a).sum::<f64>().sqrt()
                    }
                };
                assert!(
                    (mg.lower - exact).abs() < 1e-9,
                    "seed {seed} {norm:?}: {} vs exact {exact}",
                    mg.lower
                );
            }
        }
    }
}

#[test]
fn crown_ada_alone_can_be_looser_than_ibp() {
    // z = 3x - 1 on x in [0, 1] is in [-1, 2]; the margin Z0 - Z1 is relu(z) >= 0. IBP
    // proves 0; CROWN-Ada's lower line (slope 1, since u >= -l) proves only -1.
    let dev = Device::Cpu;
    let layers = [
        Layer::Linear {
            weight: Tensor::new(&[[3.0f64]], &dev).unwrap(),
            bias: Tensor::new(&[-1.0f64], &dev).unwrap(),
        },
        Layer::Relu,
        Layer::Linear {
            weight: Tensor::new(&[[1.0f64], [0.0]], &dev).unwrap(),
            bias: Tensor::new(&[0.0f64, 0.0], &dev).unwrap(),
        },
    ];
    let net = Network::from_layers(&[1], &layers).unwrap();
    let x0 = Tensor::new(&[0.5f64], &dev).unwrap();
    let region = Region::new(&net, &x0, Norm::Linf, 0.5).unwrap();
    let ivs = layer_intervals(&net, &region, Method::Ibp).unwrap();
    let spec = Tensor::new(&[[1.0f64, -1.0]], &dev).unwrap();
    let raw = crate::crown::backward_lower(&net, 3, spec, &ivs, &region).unwrap();
    assert!((raw[0] + 1.0).abs() < 1e-12, "{raw:?}");
    let ibp = margin_bounds(&net, &x0, 0, Norm::Linf, 0.5, Method::Ibp).unwrap();
    let crown = margin_bounds(&net, &x0, 0, Norm::Linf, 0.5, Method::crown()).unwrap();
    assert_eq!(ibp.min(), 0.0);
    assert_eq!(crown.min(), 0.0);
}

#[test]
fn crown_is_usually_strictly_tighter_than_ibp() {
    let (mut tighter, mut total) = (0, 0);
    for seed in 0..12 {
        let net = random_net(seed as usize, seed);
        let x0 = image(&net, seed + 50);
        for (norm, eps) in [(Norm::Linf, 0.05), (Norm::L2, 0.3)] {
            let ibp = margin_bounds(&net, &x0, 0, norm, eps, Method::Ibp).unwrap();
            let crown = margin_bounds(&net, &x0, 0, norm, eps, Method::crown()).unwrap();
            for (c, i) in crown.margins.iter().zip(&ibp.margins) {
                total += 1;
                tighter += usize::from(c.lower > i.lower + 1e-9);
            }
        }
    }
    assert!(
        2 * tighter > total,
        "CROWN tighter on only {tighter} of {total} margins"
    );
}

/// Plain per-neuron interval arithmetic on a tiny conv net (loops over every weight,
/// no tensors), against the crate's IBP at every layer.
#[test]
fn ibp_matches_plain_interval_arithmetic_on_a_conv_net() {
    let rng = &mut StdRng::seed_from_u64(11);
    let (w1, b1) = (tensor(rng, &[3, 2, 3, 3], 0.5), tensor(rng, &[3], 0.3));
    let (w2, b2) = (tensor(rng, &[2, 3, 2, 2], 0.5), tensor(rng, &[2], 0.3));
    let (w3, b3) = (tensor(rng, &[3, 2], 0.8), tensor(rng, &[3], 0.3));
    let layers = [
        Layer::Conv2d {
            weight: w1.clone(),
            bias: b1.clone(),
            stride: 1,
            padding: 1,
        },
        Layer::Relu,
        Layer::MaxPool { k: 2 },
        Layer::Conv2d {
            weight: w2.clone(),
            bias: b2.clone(),
            stride: 2,
            padding: 1,
        },
        Layer::Relu,
        Layer::GlobalAvgPool,
        Layer::Linear {
            weight: w3.clone(),
            bias: b3.clone(),
        },
    ];
    let net = Network::from_layers(&[2, 4, 4], &layers).unwrap();
    let x0 = image(&net, 12);
    let eps = 0.1;
    let region = Region::new(&net, &x0, Norm::Linf, eps).unwrap();
    let ours = layer_intervals(&net, &region, Method::Ibp).unwrap();

    type Iv = Vec<(f64, f64)>;
    let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
    // conv: input c x h x h intervals, weight o x c x k x k.
    let conv = |x: &Iv,
                c: usize,
                h: usize,
                w: &[f64],
                b: &[f64],
                o: usize,
                k: usize,
                s: usize,
                p: usize|
     -> (Iv, usize) {
        let ho = (h + 2 * p - k) / s + 1;
        let mut out = Vec::new();
        for oc in 0..o {
            for i in 0..ho {
                for j in 0..ho {
                    let (mut lo, mut hi) = (b[oc], b[oc]);
                    for ic in 0..c {
                        for di in 0..k {
                            for dj in 0..k {
                                let (r, q) = (
                                    (i * s + di) as isize - p as isize,
                                    (j * s + dj) as isize - p as isize,
                                );
                                if r < 0 || q < 0 || r >= h as isize || q >= h as isize {
                                    continue;
                                }
                                let (xl, xu) = x[ic * h * h + r as usize * h + q as usize];
                                let wv = w[((oc * c + ic) * k + di) * k + dj];
                                lo += (wv * xl).min(wv * xu);
                                hi += (wv * xl).max(wv * xu);
                            }
                        }
                    }
                    out.push((lo, hi));
                }
            }
        }
        (out, ho)
    };
    let relu = |x: &Iv| -> Iv { x.iter().map(|&(l, u)| (l.max(0.0), u.max(0.0))).collect() };
    let x: Iv = flat(&x0)
        .iter()
        .map(|v| ((v - eps).max(0.0), (v + eps).min(1.0)))
        .collect();
    let (h1, s1) = conv(&x, 2, 4, &flat(&w1), &flat(&b1), 3, 3, 1, 1);
    let r1 = relu(&h1);
    let mut p1 = Vec::new();
    for c in 0..3 {
        for i in 0..2 {
            for j in 0..2 {
                let cell = |a: usize, b: usize| r1[c * s1 * s1 + (2 * i + a) * s1 + 2 * j + b];
                let cells = [cell(0, 0), cell(0, 1), cell(1, 0), cell(1, 1)];
                p1.push((
                    cells.iter().map(|c| c.0).fold(f64::MIN, f64::max),
                    cells.iter().map(|c| c.1).fold(f64::MIN, f64::max),
                ));
            }
        }
    }
    let (h2, s2) = conv(&p1, 3, 2, &flat(&w2), &flat(&b2), 2, 2, 2, 1);
    let r2 = relu(&h2);
    let n2 = s2 * s2;
    let g: Iv = (0..2)
        .map(|c| {
            let cells = &r2[c * n2..(c + 1) * n2];
            (
                cells.iter().map(|v| v.0).sum::<f64>() / n2 as f64,
                cells.iter().map(|v| v.1).sum::<f64>() / n2 as f64,
            )
        })
        .collect();
    let (w3v, b3v) = (flat(&w3), flat(&b3));
    let z: Iv = (0..3)
        .map(|o| {
            let terms = (0..2).map(|i| {
                let wv = w3v[o * 2 + i];
                (
                    (wv * g[i].0).min(wv * g[i].1),
                    (wv * g[i].0).max(wv * g[i].1),
                )
            });
            terms.fold((b3v[o], b3v[o]), |a, t| (a.0 + t.0, a.1 + t.1))
        })
        .collect();
    for (layer, expected) in [
        (1, &h1),
        (2, &r1),
        (3, &p1),
        (4, &h2),
        (5, &r2),
        (6, &g),
        (7, &z),
    ] {
        let (l, u) = ours[layer].to_vecs().unwrap();
        assert_eq!(l.len(), expected.len(), "layer {layer}");
        for (t, &(el, eu)) in expected.iter().enumerate() {
            assert!(
                (l[t] - el).abs() < 1e-12 && (u[t] - eu).abs() < 1e-12,
                "layer {layer} neuron {t}"
            );
        }
    }
}

#[test]
fn verified_accuracy_counts_certified_images_and_shrinks_with_eps() {
    let net = random_net(1, 42);
    let xs: Vec<Tensor> = (0..4).map(|s| image(&net, 60 + s)).collect();
    let batch = Tensor::stack(&xs, 0).unwrap();
    let predicted: Vec<usize> = logits(&net, &batch).iter().map(|z| argmax(z)).collect();
    // Two images labelled as predicted, two with another label: never certified.
    let k = net.num_classes();
    let labels = [
        predicted[0],
        predicted[1],
        (predicted[2] + 1) % k,
        (predicted[3] + 1) % k,
    ];
    let eps = [0.0, 0.001, 0.01, 0.1, 1.0];
    let acc =
        crate::verified_accuracy(&net, &batch, &labels, Norm::Linf, &eps, Method::Ibp).unwrap();
    assert_eq!(acc[0], 0.5);
    assert!(acc.windows(2).all(|w| w[1] <= w[0]), "{acc:?}");
    assert_eq!(
        acc[4], 0.0,
        "over the whole box, IBP certifies nothing here"
    );
    assert!(
        crate::verified_accuracy(&net, &batch, &labels[..3], Norm::Linf, &eps, Method::Ibp)
            .is_err()
    );
}

/// A batch gives each image the bounds it gets alone: on every architecture kind, both
/// norms and every method, five images with their own class and radius (one of them 0,
/// one over the whole box); the lockstep bisection gives each image its own radius with
/// the same number of evaluations. Relaxations are per image, so a batch that mixed
/// images up (a slope or max-pool choice or ball from another image) would differ.
#[test]
fn a_batch_bounds_each_image_as_alone() {
    for kind in 0..3 {
        let net = random_net(kind, 90 + kind as u64);
        let xs: Vec<Tensor> = (0..5).map(|s| image(&net, 200 + s)).collect();
        let batch = Tensor::stack(&xs, 0).unwrap();
        let predicted: Vec<usize> = logits(&net, &batch).iter().map(|z| argmax(z)).collect();
        let k = net.num_classes();
        // Image 3 asks for a class it is not: its bisection ends at once.
        let classes: Vec<usize> = (0..5)
            .map(|g| {
                if g == 3 {
                    (predicted[g] + 1) % k
                } else {
                    predicted[g]
                }
            })
            .collect();
        for norm in [Norm::Linf, Norm::L2] {
            let eps = [0.0, 0.02, 0.05, 0.1, 3.0];
            for method in [Method::Ibp, Method::crown_ibp(), Method::crown()] {
                let together =
                    crate::margin_bounds_batch(&net, &batch, &classes, norm, &eps, method).unwrap();
                for (g, b) in together.iter().enumerate() {
                    let alone =
                        margin_bounds(&net, &xs[g], classes[g], norm, eps[g], method).unwrap();
                    assert_eq!((b.class, b.eps), (alone.class, alone.eps));
                    for (m, a) in b.margins.iter().zip(&alone.margins) {
                        assert_eq!(m.other, a.other);
                        assert!(
                            (m.lower - a.lower).abs() <= 1e-10 * (1.0 + a.lower.abs()),
                            "kind {kind} {norm:?} {} image {g}: {} vs {} alone",
                            method.name(),
                            m.lower,
                            a.lower
                        );
                    }
                }
                let search = RadiusSearch::default_for(norm, net.input_len());
                let radii =
                    crate::certified_radii(&net, &batch, &classes, norm, method, search).unwrap();
                for (g, r) in radii.iter().enumerate() {
                    let alone =
                        certified_radius(&net, &xs[g], classes[g], norm, method, search).unwrap();
                    assert_eq!(
                        (
                            r.radius,
                            r.not_certified,
                            r.evaluations,
                            r.certified_at_zero
                        ),
                        (
                            alone.radius,
                            alone.not_certified,
                            alone.evaluations,
                            alone.certified_at_zero
                        ),
                        "kind {kind} {norm:?} {} image {g}",
                        method.name()
                    );
                }
                assert!(!radii[3].certified_at_zero && radii[3].radius == 0.0);
                assert!(radii.iter().filter(|r| r.radius > 0.0).count() >= 3);
            }
        }
    }
    // Mismatched lengths are refused, naming what is wrong.
    let net = random_net(0, 1);
    let batch = Tensor::stack(&[image(&net, 1), image(&net, 2)], 0).unwrap();
    let e = crate::margin_bounds_batch(&net, &batch, &[0], Norm::Linf, &[0.1], Method::Ibp)
        .unwrap_err();
    assert!(e.to_string().contains("radii"), "{e}");
    let search = RadiusSearch::default_for(Norm::Linf, net.input_len());
    let e =
        crate::certified_radii(&net, &batch, &[0], Norm::Linf, Method::Ibp, search).unwrap_err();
    assert!(e.to_string().contains("2 images and 1 classes"), "{e}");
}
