//! The fused backward sweep (`winograd::backward`) against the two passes it replaces,
//! to the bit: the flipped convolution's forward pass (the input gradient) and the
//! weight pass, each reading the output gradient through ReLU and the pooling record.

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::kernels::{assume_written, unwritten, Elem, Geometry};
use crate::options::{Activation, BatchLayout};
use crate::passes::forward::winograd_forward;
use crate::passes::input_grad::flipped;
use crate::passes::weight_grad::{winograd_backward_both, winograd_weight_grad};
use crate::passes::{chunk, inner_parallelism};
use crate::winograd::{self, Destination, Source};

/// (input gradient, `dW | db`) through the two separate passes.
#[allow(unsafe_code)]
fn separate<T: Elem>(
    g: &Geometry,
    x: &[T],
    gy: Source<'_, T>,
    w: &[T],
    layout: BatchLayout,
) -> (Vec<T>, Vec<T>) {
    let (back, flipped) = flipped(g, w);
    let mut dx = unwritten(g.n * g.in_len());
    let out = Destination {
        out: &mut dx[..],
        pool: 1,
        codes: &mut [][..],
        layout,
    };
    let (per, par) = (chunk(g.n), inner_parallelism(g.n));
    winograd_forward(
        &back,
        gy,
        (&flipped, None, Activation::Identity),
        out,
        per,
        par,
    );
    let flat = winograd_weight_grad(g, x, gy, layout);
    // SAFETY: the Winograd forward pass writes every value of its output.
    (unsafe { assume_written(dx) }, flat)
}

/// (input gradient, `dW | db`) through the fused sweep.
#[allow(unsafe_code)]
fn fused<T: Elem>(
    g: &Geometry,
    x: &[T],
    gy: Source<'_, T>,
    w: &[T],
    layout: BatchLayout,
) -> (Vec<T>, Vec<T>) {
    let mut out = unwritten(g.n * g.in_len() + g.c_out * g.ckk() + g.c_out);
    winograd_backward_both(g, x, gy, w, layout, &mut out);
    // SAFETY: the fused sweep writes every value of its output.
    let mut all = unsafe { assume_written(out) };
    let flat = all.split_off(g.n * g.in_len());
    (all, flat)
}

/// Values of a random case in `T` (through f64, so both element types see the same
/// numbers up to rounding).
fn values<T: Elem>(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<T> {
    (0..n)
        .map(|_| T::from_f64(rng.random_range(lo..hi)))
        .collect()
}

/// A value's bits, to compare results exactly (NaN and the sign of zero included).
trait Bits: Elem + std::fmt::Debug {
    fn bits(self) -> u64;
}

impl Bits for f32 {
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
}

impl Bits for f64 {
    fn bits(self) -> u64 {
        self.to_bits()
    }
}

fn same_bits<T: Bits>(a: &[T], b: &[T], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert_eq!(
            x.bits(),
            y.bits(),
            "{what}: value {i} differs: {x:?} vs {y:?}"
        );
    }
}

fn check<T: Bits>(case: (usize, usize, usize, usize, usize, usize, usize, usize), cl: bool) {
    let (n, c_in, c_out, h, w, k, pad, pool) = case;
    let layout = if cl {
        BatchLayout::ChannelsLast
    } else {
        BatchLayout::ChannelsFirst
    };
    let g = Geometry::new((n, c_in, h, w), (c_out, c_in, k, k), 1, pad).unwrap();
    assert!(
        winograd::backward::applies(&g),
        "case {case:?} does not apply"
    );
    let mut rng = StdRng::seed_from_u64((n * 131 + c_in * 17 + c_out + h + k + pool) as u64);
    let x: Vec<T> = values(&mut rng, n * g.in_len(), -1.0, 1.0);
    let wt: Vec<T> = values(&mut rng, c_out * g.ckk(), -0.5, 0.5);
    let pooled = n * g.out_len() / (pool * pool);
    // The gradient, the pooled output (about a third not positive: ReLU's mask) and
    // each window's maximum.
    let grad: Vec<T> = values(&mut rng, pooled, -1.0, 1.0);
    let y: Vec<T> = values(&mut rng, pooled, -0.5, 1.0);
    let codes: Vec<u8> = if pool > 1 {
        (0..pooled)
            .map(|_| rng.random_range(0..pool * pool) as u8)
            .collect()
    } else {
        Vec::new()
    };
    let gy = Source::ThroughRelu {
        grad: &grad,
        y: &y,
        codes: &codes,
        k: pool,
        layout,
    };
    let label = format!("{case:?} channels-last {cl} {}", std::any::type_name::<T>());
    let (dx, flat) = fused(&g, &x, gy, &wt, layout);
    if n == 0 {
        assert!(
            dx.is_empty(),
            "{label}: an empty batch has no input gradient"
        );
        assert!(
            flat.iter().all(|&v| v == T::ZERO),
            "{label}: dW of no images"
        );
        return;
    }
    let (dx_ref, flat_ref) = separate(&g, &x, gy, &wt, layout);
    same_bits(&dx, &dx_ref, &format!("{label}: input gradient"));
    same_bits(&flat, &flat_ref, &format!("{label}: dW | db"));
    // Not a comparison of two zero vectors: both gradients have values.
    assert!(dx.iter().filter(|&&v| v != T::ZERO).count() > dx.len() / 4);
    assert!(flat.iter().filter(|&&v| v != T::ZERO).count() > flat.len() / 2);
}

#[test]
fn the_fused_backward_sweep_equals_the_two_passes_to_the_bit() {
    // (n, c_in, c_out, h, w, k, pad, pool): F(4x4) pooled by 2 (GapCnn's conv2 and
    // conv4 shapes, cropped last tiles at 7 x 7), F(5x5) over several rounds a thread
    // (40 images of 9 tiles: 20 a thread on two threads, in rounds of 8), by 4, without pooling, F(3x3, 5x5), one
    // image (fewer than threads), eight lanes and sixteen, and an empty batch.
    let cases = [
        (3, 16, 32, 28, 28, 3, 1, 2),
        (40, 16, 16, 14, 14, 3, 1, 1),
        (5, 32, 16, 14, 14, 3, 1, 2),
        (4, 16, 16, 7, 7, 3, 1, 1),
        (3, 8, 24, 8, 12, 3, 1, 4),
        (2, 8, 16, 12, 12, 5, 2, 1),
        (1, 16, 8, 10, 6, 3, 1, 2),
        (0, 16, 16, 8, 8, 3, 1, 2),
    ];
    for case in cases {
        for cl in [true, false] {
            check::<f32>(case, cl);
            check::<f64>(case, cl);
        }
    }
}
