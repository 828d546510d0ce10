//! Interval bound propagation (Gowal et al., 2018): elementwise `[l, u]` pushed forward,
//! affine layers by centre and radius (`W c + b ± |W| r`), ReLU, max-pool and average
//! pooling by monotonicity.

use candle_core::Tensor;

use crate::error::Result;
use crate::network::{apply, apply_with, Network, Op};
use crate::region::{Norm, Region};

/// Elementwise bounds on one layer's values, tensors `N x shape` (one row per image).
#[derive(Debug, Clone)]
pub struct Interval {
    /// Lower bounds.
    pub lower: Tensor,
    /// Upper bounds.
    pub upper: Tensor,
}

impl Interval {
    /// The elementwise intersection (both sound, so it is).
    pub(crate) fn intersect(&self, other: &Interval) -> Result<Interval> {
        Ok(Interval {
            lower: self.lower.maximum(&other.lower)?,
            upper: self.upper.minimum(&other.upper)?,
        })
    }

    /// Lower and upper bounds as vectors.
    pub fn to_vecs(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        Ok((
            self.lower.flatten_all()?.to_vec1()?,
            self.upper.flatten_all()?.to_vec1()?,
        ))
    }
}

/// One layer applied to an interval.
pub(crate) fn step(op: &Op, iv: &Interval) -> Result<Interval> {
    if op.is_affine() {
        let mid = ((&iv.lower + &iv.upper)? * 0.5)?;
        let rad = ((&iv.upper - &iv.lower)? * 0.5)?;
        let c = apply(op, &mid, true)?;
        let r = apply_with(op, &rad, false, true)?;
        return Ok(Interval {
            lower: (&c - &r)?,
            upper: (&c + &r)?,
        });
    }
    // Every other layer is monotone (non-decreasing) in each input.
    Ok(Interval {
        lower: apply(op, &iv.lower, false)?,
        upper: apply(op, &iv.upper, false)?,
    })
}

/// The first affine layer over the L2 ball, exactly: `W x0 + b ± eps ||W_row||_2`,
/// where the row norms come from `W²` applied to ones (so zero padding is counted), and
/// `eps` is each image's radius.
fn l2_first_affine(op: &Op, center: &Tensor, region: &Region) -> Result<Interval> {
    let c = apply(op, center, true)?;
    let sq = match op {
        Op::Linear { w_sq, b, .. } => Op::Linear {
            w: w_sq.clone(),
            b: b.clone(),
            w_abs: w_sq.clone(),
            w_sq: w_sq.clone(),
        },
        Op::Conv {
            w_sq,
            b,
            stride,
            padding,
            ..
        } => Op::Conv {
            w: w_sq.clone(),
            b: b.clone(),
            w_abs: w_sq.clone(),
            w_sq: w_sq.clone(),
            stride: *stride,
            padding: *padding,
        },
        _ => unreachable!("called on affine layers only"),
    };
    let norms = apply(&sq, &center.ones_like()?, false)?.sqrt()?;
    let r = norms.broadcast_mul(&region.eps_tensor(norms.rank())?)?;
    Ok(Interval {
        lower: (&c - &r)?,
        upper: (&c + &r)?,
    })
}

/// The intervals of every layer's input (`[0]` the region's box, `[len]` the logits).
/// After each layer, `tighten(i, &so_far)` may return a sound interval for the input of
/// layer `i`, which is intersected in (CROWN's intermediate bounds come in this way).
pub(crate) fn intervals(
    net: &Network,
    region: &Region,
    mut tighten: impl FnMut(usize, &[Interval]) -> Result<Option<Interval>>,
) -> Result<Vec<Interval>> {
    let mut ivs = vec![Interval {
        lower: region.lower.clone(),
        upper: region.upper.clone(),
    }];
    // The centre pushed through leading reshapes, until the first affine layer.
    let mut center = Some(region.center.clone());
    for (i, op) in net.ops().iter().enumerate() {
        let mut next = step(op, &ivs[i])?;
        if let Some(c) = center.take() {
            match op {
                Op::Flatten => center = Some(apply(op, &c, false)?),
                Op::Linear { .. } | Op::Conv { .. } if region.norm == Norm::L2 => {
                    next = next.intersect(&l2_first_affine(op, &c, region)?)?;
                }
                _ => {}
            }
        }
        ivs.push(next);
        if let Some(t) = tighten(i + 1, &ivs)? {
            let last = ivs.len() - 1;
            ivs[last] = ivs[last].intersect(&t)?;
        }
    }
    Ok(ivs)
}
