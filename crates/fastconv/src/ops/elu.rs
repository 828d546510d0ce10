//! [`elu`]: ELU (`α = 1`) as one op each way, equal to the bit to candle's `elu(1.0)`
//! and to its backward.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv2d_backward::OutputMask;
use super::{slice, with_dtype};
use crate::kernels::Elem;
use crate::switch::runs_fast;

/// Elements per parallel task: below this the op runs on the calling thread.
const CHUNK: usize = 1 << 14;

/// `elu(x)` with `α = 1`: `x` where its sign bit is clear, `exp(x) - 1` elsewhere. On the
/// fast path one op whose f32 `exp` is vectorised (equal to the C library's `expf`, as
/// candle's `elu` calls it), with a one-op backward `grad` where the output is positive
/// and `grad * (y + 1)` elsewhere (candle's backward builds the same mask from several ops,
/// and gives NaN at `x = +inf`, where this gives `grad`); candle's `elu(1.0)` elsewhere.
pub fn elu(x: &Tensor) -> Result<Tensor> {
    if runs_fast(x) {
        return x.contiguous()?.apply_op1(Elu);
    }
    x.elu(1.0)
}

/// `y[i] = y[i].elu()` for every element, on all threads in chunks of [`CHUNK`] (on the
/// calling thread alone below that): the forward of [`elu`] and of the convolutions
/// with an ELU.
pub(crate) fn elu_in_place_par<T: Elem>(y: &mut [T]) {
    if y.len() <= CHUNK {
        T::elu_in_place(y);
    } else {
        y.par_chunks_mut(CHUNK).for_each(|c| T::elu_in_place(c));
    }
}

struct Elu;

impl CustomOp1 for Elu {
    fn name(&self) -> &'static str {
        "fast-elu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Elem>(x: &[T]) -> Vec<T> {
            let mut y = x.to_vec();
            elu_in_place_par(&mut y);
            y
        }
        let out = with_dtype!("fast elu", s, |v| run(slice(v, l, "input")?));
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?.apply_op2_no_bwd(y, &OutputMask::Elu)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    /// Values on both sides of zero, zeros of both signs, the deep tail, infinities'
    /// neighbours: the forward and the gradient against candle's `elu(1.0)`, to the bit.
    #[test]
    fn elu_is_candles_to_the_bit_both_ways() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let mut v: Vec<f32> = (0..40_000)
            .map(|i| ((i as f32) * 0.618_034).sin() * 30.0 - 5.0)
            .collect();
        v.extend([
            0.0,
            -0.0,
            -1e-30,
            1e-30,
            -88.5,
            -200.0,
            f32::MIN,
            f32::MAX,
            -17.4,
        ]);
        let n = v.len();
        let x = Var::from_vec(v.clone(), n, &dev)?;
        let upstream = Tensor::from_vec(
            (0..n)
                .map(|i| ((i as f32) * 0.37).cos())
                .collect::<Vec<f32>>(),
            n,
            &dev,
        )?;
        let ours = super::elu(x.as_tensor())?;
        let theirs = x.as_tensor().elu(1.0)?;
        let (a, b) = (ours.to_vec1::<f32>()?, theirs.to_vec1::<f32>()?);
        assert!(a.iter().any(|&y| y < 0.0 && y > -1.0) && a.iter().any(|&y| y > 1.0));
        for ((x, a), b) in v.iter().zip(&a).zip(&b) {
            assert_eq!(a.to_bits(), b.to_bits(), "elu({x:e}): {a:e} vs {b:e}");
        }
        let ga = (ours * &upstream)?.sum_all()?.backward()?;
        let gb = (theirs * &upstream)?.sum_all()?.backward()?;
        let ga = ga.get(&x).expect("gradient").to_vec1::<f32>()?;
        let gb = gb.get(&x).expect("gradient").to_vec1::<f32>()?;
        for ((x, a), b) in v.iter().zip(&ga).zip(&gb) {
            assert_eq!(a.to_bits(), b.to_bits(), "elu'({x:e}): {a:e} vs {b:e}");
        }
        Ok(())
    }

    /// f64 and a strided input take the same values as candle's.
    #[test]
    fn elu_on_f64_and_a_transposed_input() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::arange(-60i64, 60, &dev)?
            .to_dtype(candle_core::DType::F64)?
            .affine(0.1, 0.0)?
            .reshape((10, 12))?
            .t()?;
        let ours = super::elu(&x)?.to_vec2::<f64>()?;
        let theirs = x.elu(1.0)?.to_vec2::<f64>()?;
        assert_eq!(ours, theirs);
        Ok(())
    }
}
