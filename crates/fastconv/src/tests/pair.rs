//! Two layers as one op (`conv2d_pair_relu_pool_nhwc`) against the two ops.

use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::*;

/// The output and every gradient candle's backward gives (input, W1, b1, W2, b2, in
/// that order, `None` where the tensor is outside the graph) of `sum(r * y)`, with the
/// two layers as one op (`paired`) or as two.
fn pair_gradients(
    x: &Tensor,
    layers: [(&Tensor, &Tensor); 2],
    paired: bool,
) -> (Vec<f64>, Vec<Option<Vec<f64>>>) {
    let [(w1, b1), (w2, b2)] = layers;
    let y = if paired {
        conv2d_pair_relu_pool_nhwc(
            x,
            ConvLayer::new(w1, b1, opts(1, 1)),
            ConvLayer::new(w2, b2, opts(1, 1)),
            2,
        )
    } else {
        let y1 = conv2d_nhwc(x, w1, b1, opts(1, 1), Activation::Relu).unwrap();
        conv2d_relu_pool_nhwc(&y1, w2, b2, opts(1, 1), 2)
    }
    .unwrap();
    let g = (&y * wave(&y, 0.61))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let grads = [x, w1, b1, w2, b2]
        .iter()
        .map(|t| g.get(t).map(flat))
        .collect();
    (flat(&y), grads)
}

#[test]
fn paired_layers_match_the_two_ops_for_every_set_of_tracked_arguments() {
    // conv1 -> conv2 of GapCnn in small (one input channel: the first layer on the
    // GEMM path) and conv3 -> conv4 (both Winograd), with the input tracked (attacks:
    // weights are plain tensors), the weights tracked (training), or both.
    let dev = Device::Cpu;
    let names = ["input", "W1", "b1", "W2", "b2"];
    for &(c_in, c_mid, c_out, h) in &[(1, 8, 8, 12), (8, 16, 16, 8), (8, 8, 16, 14)] {
        for (track_input, track_weights) in [(true, false), (false, true), (true, true)] {
            let mut rng = StdRng::seed_from_u64(23);
            let mut t = |shape: &[usize], scale: f64, track: bool| {
                let v = uniform(&mut rng, shape, -scale, scale, DType::F64, &dev).unwrap();
                if track {
                    Var::from_tensor(&v).unwrap().as_tensor().clone()
                } else {
                    v
                }
            };
            let x = t(&[2, h, h, c_in], 1.0, track_input);
            let w1 = t(&[c_mid, c_in, 3, 3], 0.5, track_weights);
            let b1 = t(&[c_mid], 0.3, track_weights);
            let w2 = t(&[c_out, c_mid, 3, 3], 0.5, track_weights);
            let b2 = t(&[c_out], 0.3, track_weights);
            let layers = [(&w1, &b1), (&w2, &b2)];
            let (y, grads) = pair_gradients(&x, layers, true);
            let (y_ref, grads_ref) = pair_gradients(&x, layers, false);
            let what =
                format!("{c_in}->{c_mid}->{c_out} at {h}, tracked {track_input}/{track_weights}");
            assert_close(&y, &y_ref, 1e-13, &format!("output {what}"));
            for ((a, b), name) in grads.iter().zip(&grads_ref).zip(names) {
                let tracked = if name == "input" {
                    track_input
                } else {
                    track_weights
                };
                assert_eq!(a.is_some(), tracked, "{name} gradient present {what}");
                assert_eq!(
                    b.is_some(),
                    tracked,
                    "{name} reference gradient present {what}"
                );
                if let (Some(a), Some(b)) = (a, b) {
                    assert_close(a, b, 1e-13, &format!("{name} gradient {what}"));
                }
            }
        }
    }
}

#[test]
fn paired_layers_check_their_arguments() {
    let dev = Device::Cpu;
    let t = |shape: &[usize]| Tensor::ones(shape, DType::F32, &dev).unwrap();
    let (w1, b1, w2, b2) = (t(&[8, 1, 3, 3]), t(&[8]), t(&[8, 8, 3, 3]), t(&[8]));
    // A window that does not divide the output runs the two ops, which refuse it.
    let x = t(&[1, 6, 6, 1]);
    let pair = |x: &Tensor, w2: &Tensor, k| {
        conv2d_pair_relu_pool_nhwc(
            x,
            ConvLayer::new(&w1, &b1, opts(1, 1)),
            ConvLayer::new(w2, &b2, opts(1, 1)),
            k,
        )
    };
    assert!(pair(&x, &w2, 4).is_err());
    // Channels that do not chain are an error, not a panic.
    assert!(pair(&x, &t(&[8, 4, 3, 3]), 2).is_err());
    assert!(pair(&t(&[1, 6, 6, 2]), &w2, 2).is_err());
    assert_eq!(pair(&x, &w2, 2).unwrap().dims4().unwrap(), (1, 3, 3, 8));
}
