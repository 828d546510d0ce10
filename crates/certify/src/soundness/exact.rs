//! Bounds against exact references: CROWN is exact on linear networks and usually
//! tighter than IBP (CROWN-Ada's lower line alone can be looser); IBP equals plain
//! per-neuron interval arithmetic.

use candle_core::{Device, Tensor};
use models::Layer;
use rand::{rngs::StdRng, SeedableRng};

use super::{conv, image, linear, logits, random_net, tensor};
use crate::{layer_intervals, margin_bounds, Method, Network, Norm, Region};

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
