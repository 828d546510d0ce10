//! CROWN (Zhang et al., NeurIPS 2018): linear lower bounds `A x + c` on linear
//! functions of a layer's values, pushed backwards to the input layer by layer and
//! concretised over the region.
//!
//! - affine layers: `A <- A W`, `c += A b` (a convolution's `A W` is a transposed
//!   convolution);
//! - ReLU with input bounds `[l, u]`: active (`l >= 0`) identity, dead (`u <= 0`) zero,
//!   unstable: upper line `u (x - l) / (u - l)`, lower line `a x` with `a = 1` if
//!   `u >= -l` else `0` (CROWN-Ada); a positive coefficient takes the lower line, a
//!   negative one the upper;
//! - max-pool (DeepPoly, Singh et al. POPL 2019): lower line `x_i*` (the input with the
//!   largest lower bound), upper line the constant `max u`; exact (`x_i*`) when `l_i*`
//!   is at least every other input's `u`;
//! - global average pooling and flatten are linear.
//!
//! Pure CROWN-Ada is not always tighter than IBP (an unstable ReLU's lower line `x`
//! reaches `l < 0` where IBP has `0`; see the test `crown_ada_alone_can_be_looser_than_ibp`),
//! so every CROWN bound here, intermediate or final, is intersected with IBP's.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;
use crate::ibp::Interval;
use crate::network::{Network, Op};
use crate::region::{Norm, Region};

/// Lower bounds of the rows of `a · v`, where `v` is the input of layer `upto` (the
/// output of layer `upto - 1`) and `a` is `(N R) x shape(upto)`: `R` rows per image of
/// the region, image by image. `ivs[i]` bounds the input of each nonlinear layer
/// `i < upto` (`N x shape`). Returns the `N R` bounds in the order of `a`'s rows.
pub(crate) fn backward_lower(
    net: &Network,
    upto: usize,
    a: Tensor,
    ivs: &[Interval],
    region: &Region,
) -> Result<Vec<f64>> {
    let rows = a.dim(0)?;
    let mut a = a;
    let mut c = Tensor::zeros(rows, DType::F64, &Device::Cpu)?;
    for i in (0..upto).rev() {
        let (next, add) = backward_step(&net.ops()[i], net.shape(i), a, &ivs[i])?;
        a = next;
        if let Some(add) = add {
            c = (c + add)?;
        }
    }
    let a = a.flatten_from(1)?;
    let c = (c + concretise(&a, region)?)?;
    Ok(c.to_vec1()?)
}

/// `a` (`(N R) x ...`) times a per-image tensor `t` (`N x ...`, the same trailing
/// size): the rows of image `g` are scaled by `t[g]`.
fn per_image_mul(a: &Tensor, t: &Tensor) -> Result<Tensor> {
    let images = t.dim(0)?;
    let dims = a.dims().to_vec();
    let m: usize = dims[1..].iter().product();
    let rows = dims[0] / images;
    Ok(a.reshape((images, rows, m))?
        .broadcast_mul(&t.reshape((images, 1, m))?)?
        .reshape(dims)?)
}

/// `min` of `a x` over the region, per row of `a` (`(N R) x n`, rows of image `g`
/// over image `g`'s ball).
fn concretise(a: &Tensor, region: &Region) -> Result<Tensor> {
    let images = region.len();
    let (rows, n) = a.dims2()?;
    let a = a.reshape((images, rows / images, n))?;
    let col = |t: &Tensor| t.reshape((images, n, 1));
    Ok(match region.norm {
        Norm::Linf => {
            let pos = a.relu()?;
            let neg = (&a - &pos)?;
            (pos.matmul(&col(&region.lower)?)? + neg.matmul(&col(&region.upper)?)?)?
                .flatten_all()?
        }
        Norm::L2 => {
            let dot = a.matmul(&col(&region.center)?)?.squeeze(2)?;
            let norm = a.sqr()?.sum(2)?.sqrt()?;
            (dot - norm.broadcast_mul(&region.eps_tensor(2)?)?)?.flatten_all()?
        }
    })
}

/// One layer backwards: the new `A` on the layer's input and the constant it adds.
fn backward_step(
    op: &Op,
    in_shape: &[usize],
    a: Tensor,
    iv: &Interval,
) -> Result<(Tensor, Option<Tensor>)> {
    let rows = a.dim(0)?;
    let mut full = vec![rows];
    full.extend_from_slice(in_shape);
    Ok(match op {
        Op::Linear { w, b, .. } => {
            let add = a.matmul(&b.unsqueeze(1)?)?.squeeze(1)?;
            (a.matmul(w)?, Some(add))
        }
        Op::Conv {
            w,
            b,
            stride,
            padding,
            ..
        } => {
            let add = a.sum((2, 3))?.matmul(&b.unsqueeze(1)?)?.squeeze(1)?;
            let k = w.dim(2)?;
            if *stride == 1 && w.dim(3)? == k && *padding < k {
                // Stride 1: the adjoint is a correlation of `A`, padded by `k - 1 - p`,
                // with the kernel flipped in both axes and its channels swapped (the same
                // map as the transposed convolution, on the fast im2col + GEMM path).
                let reversed: Vec<u32> = (0..k as u32).rev().collect();
                let flip = Tensor::from_vec(reversed, k, &Device::Cpu)?;
                let w_adj = w
                    .transpose(0, 1)?
                    .contiguous()?
                    .index_select(&flip, 2)?
                    .index_select(&flip, 3)?
                    .contiguous()?;
                return Ok((a.conv2d(&w_adj, k - 1 - padding, 1, 1, 1)?, Some(add)));
            }
            // Unpadded transposed convolution: index `t` is input index `t - padding`.
            // Keep the input's indices; those no output read (stride > 1) get 0.
            let mut t = a.conv_transpose2d(w, 0, 0, *stride, 1)?;
            for (axis, size) in [(2, in_shape[1]), (3, in_shape[2])] {
                let full = t.dim(axis)?;
                let kept = size.min(full - padding);
                t = t
                    .narrow(axis, *padding, kept)?
                    .pad_with_zeros(axis, 0, size - kept)?;
            }
            (t, Some(add))
        }
        Op::Relu => {
            let (ls, us, ui) = relu_lines(iv)?;
            let pos = a.relu()?;
            let neg = (&a - &pos)?;
            let add = per_image_mul(&neg, &ui)?.flatten_from(1)?.sum(1)?;
            let next = (per_image_mul(&pos, &ls)? + per_image_mul(&neg, &us)?)?;
            (next, Some(add))
        }
        Op::MaxPool { k } => max_pool_backward(*k, in_shape, &a, iv)?,
        Op::GlobalAvgPool => {
            let (h, w) = (in_shape[1], in_shape[2]);
            let next = (a.reshape((rows, in_shape[0], 1, 1))? / (h * w) as f64)?
                .broadcast_as(full.as_slice())?
                .contiguous()?;
            (next, None)
        }
        Op::Flatten => (a.reshape(full.as_slice())?, None),
    })
}

/// The ReLU's lower slope, upper slope and upper intercept per neuron (`N x shape`).
fn relu_lines(iv: &Interval) -> Result<(Tensor, Tensor, Tensor)> {
    let (l, u) = iv.to_vecs()?;
    let n = l.len();
    let (mut ls, mut us, mut ui) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for i in 0..n {
        if l[i] >= 0.0 {
            ls[i] = 1.0;
            us[i] = 1.0;
        } else if u[i] > 0.0 {
            let s = u[i] / (u[i] - l[i]);
            us[i] = s;
            ui[i] = -s * l[i];
            ls[i] = if u[i] >= -l[i] { 1.0 } else { 0.0 };
        }
    }
    let shape = iv.lower.dims();
    let t = |v: Vec<f64>| Tensor::from_vec(v, shape, &Device::Cpu);
    Ok((t(ls)?, t(us)?, t(ui)?))
}

/// Max-pool backwards with DeepPoly's lines (see the module doc), each image's rows
/// with its own bounds.
fn max_pool_backward(
    k: usize,
    in_shape: &[usize],
    a: &Tensor,
    iv: &Interval,
) -> Result<(Tensor, Option<Tensor>)> {
    let (c, h, w) = (in_shape[0], in_shape[1], in_shape[2]);
    let (ho, wo) = (h / k, w / k);
    let (n_out, n_in) = (c * ho * wo, c * h * w);
    let images = iv.lower.dim(0)?;
    let (l, u) = iv.to_vecs()?;
    // Per image and output: the input its lower line picks, whether that is exact, and
    // max u.
    let mut pick = Vec::with_capacity(images * n_out);
    for g in 0..images {
        let (l, u) = (&l[g * n_in..(g + 1) * n_in], &u[g * n_in..(g + 1) * n_in]);
        for ch in 0..c {
            for oi in 0..ho {
                for oj in 0..wo {
                    let cells =
                        (0..k * k).map(|t| ch * h * w + (oi * k + t / k) * w + oj * k + t % k);
                    let best = cells
                        .clone()
                        .max_by(|&x, &y| l[x].total_cmp(&l[y]))
                        .unwrap_or(0);
                    let others = cells.clone().filter(|&x| x != best).map(|x| u[x]);
                    let exact = others.fold(f64::NEG_INFINITY, f64::max) <= l[best];
                    let max_u = cells.map(|x| u[x]).fold(f64::NEG_INFINITY, f64::max);
                    pick.push((best, exact, max_u));
                }
            }
        }
    }
    let rows = a.dim(0)?;
    let per_image = rows / images;
    let av: Vec<f64> = a.flatten_all()?.to_vec1()?;
    let mut next = vec![0.0; rows * n_in];
    let mut add = vec![0.0; rows];
    for r in 0..rows {
        let g = r / per_image;
        for (o, &(best, exact, max_u)) in pick[g * n_out..(g + 1) * n_out].iter().enumerate() {
            let lambda = av[r * n_out + o];
            if lambda >= 0.0 || exact {
                next[r * n_in + best] += lambda;
            } else {
                add[r] += lambda * max_u;
            }
        }
    }
    let mut full = vec![rows];
    full.extend_from_slice(in_shape);
    let dev = Device::Cpu;
    Ok((
        Tensor::from_vec(next, full.as_slice(), &dev)?,
        Some(Tensor::from_vec(add, rows, &dev)?),
    ))
}

/// Multiply-adds of pushing one row backwards through layers `0..upto`.
fn backward_cost(net: &Network, upto: usize) -> f64 {
    (0..upto)
        .map(|i| {
            let out: usize = net.shape(i + 1).iter().product();
            let inp: usize = net.shape(i).iter().product();
            match &net.ops()[i] {
                Op::Linear { .. } => (out * inp) as f64,
                Op::Conv { w, .. } => (out * w.dims()[1..].iter().product::<usize>()) as f64,
                _ => inp as f64,
            }
        })
        .sum()
}

/// Whether IBP is already exact for the input of layer `i`: before it, at most one
/// affine layer and otherwise only flatten (an affine map of a box, or of the L2 ball
/// by the dual norm, has exact elementwise bounds).
fn ibp_is_exact(net: &Network, i: usize) -> bool {
    let ops = &net.ops()[..i];
    ops.iter()
        .all(|op| op.is_affine() || matches!(op, Op::Flatten))
        && ops.iter().filter(|op| op.is_affine()).count() <= 1
}

/// CROWN's bounds on the input of layer `i` for every image of the region (rows of the
/// identity and its negation per image, pushed back in chunks that keep `A` under about
/// 256 MB), when layer `i` is nonlinear, layer `i - 1` is not (after a ReLU, IBP's
/// monotone step is exact), IBP is not already exact there, and the cost is within
/// `budget` multiply-adds per image.
pub(crate) fn intermediate(
    net: &Network,
    i: usize,
    ivs: &[Interval],
    region: &Region,
    budget: f64,
) -> Result<Option<Interval>> {
    if !uses_crown(net, i, budget) {
        return Ok(None);
    }
    let images = region.len();
    let shape = net.shape(i);
    let n: usize = shape.iter().product();
    let widest = (0..=i)
        .map(|j| net.shape(j).iter().product::<usize>())
        .max()
        .unwrap_or(n);
    let chunk = ((256usize << 20) / (16 * widest * images)).clamp(1, n);
    let (mut lower, mut upper) = (vec![0.0; images * n], vec![0.0; images * n]);
    for start in (0..n).step_by(chunk) {
        let m = chunk.min(n - start);
        let mut eye = vec![0.0; images * 2 * m * n];
        for g in 0..images {
            let block = g * 2 * m;
            for r in 0..m {
                eye[(block + r) * n + start + r] = 1.0;
                eye[(block + m + r) * n + start + r] = -1.0;
            }
        }
        let mut full = vec![images * 2 * m];
        full.extend_from_slice(shape);
        let a = Tensor::from_vec(eye, full.as_slice(), &Device::Cpu)?;
        let b = backward_lower(net, i, a, ivs, region)?;
        for g in 0..images {
            let block = &b[g * 2 * m..(g + 1) * 2 * m];
            for r in 0..m {
                lower[g * n + start + r] = block[r];
                upper[g * n + start + r] = -block[m + r];
            }
        }
    }
    let dims = ivs[i].lower.dims();
    Ok(Some(Interval {
        lower: Tensor::from_vec(lower, dims, &Device::Cpu)?,
        upper: Tensor::from_vec(upper, dims, &Device::Cpu)?,
    }))
}

/// Whether [`intermediate`] computes the input bounds of layer `i` with CROWN.
pub(crate) fn uses_crown(net: &Network, i: usize, budget: f64) -> bool {
    let ops = net.ops();
    let n: usize = net.shape(i).iter().product();
    (1..ops.len()).contains(&i)
        && ops[i].is_nonlinear()
        && !ops[i - 1].is_nonlinear()
        && !ibp_is_exact(net, i)
        && n as f64 * 2.0 * backward_cost(net, i) <= budget
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(rng: &mut StdRng, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The transposed convolution is the convolution's adjoint: `<A, conv(x)> =
    /// <A W, x> + A b` for strides 1-3, paddings 0-2 and input sizes the stride does not
    /// divide (the unread rows and columns get zero).
    #[test]
    fn conv_backward_is_the_adjoint() {
        let rng = &mut StdRng::seed_from_u64(3);
        for (size, k, stride, padding) in [
            (7, 3, 2, 1),
            (8, 3, 2, 1),
            (6, 2, 1, 0),
            (9, 3, 3, 2),
            (5, 5, 1, 2),
        ] {
            let (w, b) = (random(rng, &[4, 3, k, k]), random(rng, &[4]));
            let layers = [
                models::Layer::Conv2d {
                    weight: w,
                    bias: b,
                    stride,
                    padding,
                },
                models::Layer::Flatten,
            ];
            // Flatten after it: a network ends in a vector.
            let net = Network::from_layers(&[3, size, size], &layers).unwrap();
            let op = &net.ops()[0];
            let out = net.shape(1).to_vec();
            let x = random(rng, &[1, 3, size, size]);
            let mut ashape = vec![2];
            ashape.extend_from_slice(&out);
            let a = random(rng, &ashape);
            let y = crate::network::apply(op, &x, true).unwrap();
            let lhs: Vec<f64> = a
                .broadcast_mul(&y)
                .unwrap()
                .flatten_from(1)
                .unwrap()
                .sum(1)
                .unwrap()
                .to_vec1()
                .unwrap();
            let dummy = Interval {
                lower: x.clone(),
                upper: x.clone(),
            };
            let (at, add) = backward_step(op, net.shape(0), a, &dummy).unwrap();
            assert_eq!(at.dims()[1..], [3, size, size]);
            let rhs = (at
                .broadcast_mul(&x)
                .unwrap()
                .flatten_from(1)
                .unwrap()
                .sum(1)
                .unwrap()
                + add.unwrap())
            .unwrap();
            let rhs: Vec<f64> = rhs.to_vec1().unwrap();
            for (l, r) in lhs.iter().zip(&rhs) {
                assert!(
                    (l - r).abs() < 1e-9,
                    "size {size} k {k} s {stride} p {padding}: {l} vs {r}"
                );
            }
        }
    }
}
