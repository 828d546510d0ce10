//! Best-of-5 time of `resize2d` at the SVAE decoder's two 2x upsamplings (64 channels
//! 7 -> 14, 32 channels 14 -> 28; batch 90, the Type I stage's), forward and its
//! transpose (the backward pass's work), in µs a call and a pair:
//!
//! ```text
//! cargo run --release -p fastconv --example resize_time
//! ```
use candle_core::{Device, Tensor};
use std::time::Instant;

/// The decoder's TF1-legacy bilinear matrix (`out x inp`): output `i` reads
/// `i * inp / out`.
fn bilinear(inp: usize, out: usize) -> Vec<f64> {
    let mut m = vec![0.0; out * inp];
    for i in 0..out {
        let src = (i * inp) as f64 / out as f64;
        let lo = (src.floor() as usize).min(inp - 1);
        let hi = (lo + 1).min(inp - 1);
        m[i * inp + lo] += 1.0 - (src - lo as f64);
        m[i * inp + hi] += src - lo as f64;
    }
    m
}

fn transposed(m: &[f64], (out, inp): (usize, usize)) -> Vec<f64> {
    let mut t = vec![0.0; m.len()];
    for i in 0..out {
        for j in 0..inp {
            t[j * out + i] = m[i * inp + j];
        }
    }
    t
}

/// Best seconds a call of `f` over 5 rounds of `reps` calls.
fn best(reps: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> candle_core::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(best)
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let batch = 90;
    println!("simd path: {}", fastconv::simd_path());
    for (c, h) in [(64usize, 7usize), (32, 14)] {
        let o = 2 * h;
        let m = bilinear(h, o);
        let up = fastconv::Resize::new(&m, (o, h), &m, (o, h))?;
        let t = transposed(&m, (o, h));
        let down = fastconv::Resize::new(&t, (h, o), &t, (h, o))?;
        let x = Tensor::rand(0f32, 1f32, (batch, c, h, h), &dev)?;
        let g = Tensor::rand(0f32, 1f32, (batch, c, o, o), &dev)?;
        let fwd = best(200, || fastconv::resize2d(&x, &up).map(|_| ()))?;
        let bwd = best(200, || fastconv::resize2d(&g, &down).map(|_| ()))?;
        for (what, s) in [
            (format!("{h} -> {o}"), fwd),
            (format!("{o} -> {h} (transpose)"), bwd),
        ] {
            println!(
                "{c} channels {what:<18} {:8.1} us a call {:6.2} us a pair",
                s * 1e6,
                s * 1e6 / batch as f64
            );
        }
    }
    Ok(())
}
