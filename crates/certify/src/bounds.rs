//! Margins' lower bounds at one radius, the certified radius by bisection, and verified
//! accuracy over a list of radii.

use candle_core::{Device, Tensor};

use crate::crown::{backward_lower, intermediate, uses_crown};
use crate::error::{input, Result};
use crate::ibp::{intervals, Interval};
use crate::network::{Network, Op};
use crate::region::{Norm, Region};

/// Default cost limit of CROWN's intermediate bounds, in multiply-adds per bound
/// evaluation (about a second on two cores): layers over it get IBP's bounds.
pub const DEFAULT_CROWN_BUDGET: f64 = 4e9;

/// Where CROWN takes the bounds of the values entering each ReLU and max-pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Intermediate {
    /// From IBP (CROWN-IBP, Zhang et al. ICLR 2020): cheap, looser.
    Ibp,
    /// From CROWN itself (back-substitution to the input, intersected with IBP) for
    /// every layer whose cost is within `budget` multiply-adds; IBP for the rest.
    Crown {
        /// Cost limit per layer and bound evaluation.
        budget: f64,
    },
}

/// The bound method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Interval bound propagation.
    Ibp,
    /// CROWN with CROWN-Ada ReLU lines, its bounds intersected with IBP's.
    Crown(Intermediate),
}

impl Method {
    /// CROWN with CROWN intermediate bounds within [`DEFAULT_CROWN_BUDGET`].
    pub fn crown() -> Self {
        Method::Crown(Intermediate::Crown {
            budget: DEFAULT_CROWN_BUDGET,
        })
    }

    /// CROWN with IBP's intermediate bounds.
    pub fn crown_ibp() -> Self {
        Method::Crown(Intermediate::Ibp)
    }

    /// `ibp`, `crown` or `crown-ibp`.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Ibp => "ibp",
            Method::Crown(Intermediate::Ibp) => "crown-ibp",
            Method::Crown(Intermediate::Crown { .. }) => "crown",
        }
    }

    /// The layers (indices into the sequence) whose input bounds this method computes
    /// by CROWN back-substitution on `net`; IBP gives the others.
    pub fn crown_intermediate_layers(&self, net: &Network) -> Vec<usize> {
        match self {
            Method::Crown(Intermediate::Crown { budget }) => (0..net.len())
                .filter(|&i| uses_crown(net, i, *budget))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A lower bound on `Z_class - Z_other` over the region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Margin {
    /// The other class `j`.
    pub other: usize,
    /// Lower bound on `Z_class - Z_j`.
    pub lower: f64,
}

/// Lower bounds on every margin of `class` at one radius.
#[derive(Debug, Clone, PartialEq)]
pub struct MarginBounds {
    /// The class certified.
    pub class: usize,
    /// The norm of the ball.
    pub norm: Norm,
    /// The radius.
    pub eps: f64,
    /// One per other class, in class order.
    pub margins: Vec<Margin>,
}

impl MarginBounds {
    /// The smallest margin bound.
    pub fn min(&self) -> f64 {
        self.margins
            .iter()
            .map(|m| m.lower)
            .fold(f64::INFINITY, f64::min)
    }

    /// Every margin bound is > 0: no point of the region changes the class.
    pub fn certified(&self) -> bool {
        self.min() > 0.0
    }
}

/// Lower bounds on `Z_class - Z_j` for every `j != class` over the `eps`-ball around
/// `image` intersected with [0, 1].
pub fn margin_bounds(
    net: &Network,
    image: &Tensor,
    class: usize,
    norm: Norm,
    eps: f64,
    method: Method,
) -> Result<MarginBounds> {
    let k = net.num_classes();
    if class >= k {
        return Err(input(format!(
            "class {class} is out of range: the network has {k} classes"
        )));
    }
    let region = Region::new(net, image, norm, eps)?;
    let ivs = layer_intervals(net, &region, method)?;
    let spec = spec_matrix(k, class)?;
    let mut lower = ibp_margins(net, &ivs, &spec, class)?;
    if let Method::Crown(_) = method {
        let crown = backward_lower(net, net.len(), spec, &ivs, &region)?;
        for (l, c) in lower.iter_mut().zip(crown) {
            *l = l.max(c);
        }
    }
    let others = (0..k).filter(|&j| j != class);
    Ok(MarginBounds {
        class,
        norm,
        eps,
        margins: others
            .zip(lower)
            .map(|(other, lower)| Margin { other, lower })
            .collect(),
    })
}

/// The bounds of every layer's input the method uses (`[0]` the input box, the last
/// the logits).
pub fn layer_intervals(net: &Network, region: &Region, method: Method) -> Result<Vec<Interval>> {
    match method {
        Method::Ibp | Method::Crown(Intermediate::Ibp) => intervals(net, region, |_, _| Ok(None)),
        Method::Crown(Intermediate::Crown { budget }) => intervals(net, region, |i, so_far| {
            intermediate(net, i, so_far, region, budget)
        }),
    }
}

/// Rows `e_class - e_j` for `j != class`: `(k - 1) x k`.
fn spec_matrix(k: usize, class: usize) -> Result<Tensor> {
    let mut m = Vec::with_capacity((k - 1) * k);
    for j in (0..k).filter(|&j| j != class) {
        m.extend((0..k).map(|t| match t {
            t if t == class => 1.0,
            t if t == j => -1.0,
            _ => 0.0,
        }));
    }
    Ok(Tensor::from_vec(m, (k - 1, k), &Device::Cpu)?)
}

/// IBP's margin bounds. With a linear last layer, the margin's row `C W` is folded into
/// it (Gowal et al.), tighter than `l_class - u_j`.
fn ibp_margins(net: &Network, ivs: &[Interval], spec: &Tensor, class: usize) -> Result<Vec<f64>> {
    let n = net.len();
    if let Some(Op::Linear { w, b, .. }) = net.ops().last() {
        let (cw, cb) = (spec.matmul(w)?, spec.matmul(&b.unsqueeze(1)?)?.squeeze(1)?);
        let iv = &ivs[n - 1];
        let mid = ((&iv.lower + &iv.upper)? * 0.5)?
            .flatten_all()?
            .unsqueeze(1)?;
        let rad = ((&iv.upper - &iv.lower)? * 0.5)?
            .flatten_all()?
            .unsqueeze(1)?;
        let lower = ((cw.matmul(&mid)? - cw.abs()?.matmul(&rad)?)?.squeeze(1)? + cb)?;
        return Ok(lower.to_vec1()?);
    }
    let (l, u) = ivs[n].to_vecs()?;
    Ok((0..l.len())
        .filter(|&j| j != class)
        .map(|j| l[class] - u[j])
        .collect())
}

/// How the radius is searched: bisection on `[0, upper]` until the bracket is at most
/// `max(tolerance, relative * radius)` wide (halving from `upper` first, so a small
/// radius costs `log2(upper / radius)` more evaluations, not a finer absolute step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadiusSearch {
    /// The largest radius tried.
    pub upper: f64,
    /// Absolute width of the final bracket.
    pub tolerance: f64,
    /// Width of the final bracket relative to the radius found.
    pub relative: f64,
}

impl RadiusSearch {
    /// Linf: `[0, 1]`, to `1e-6` or 1 %; L2: `[0, sqrt(n)]`, to `1e-5` or 1 % (beyond
    /// `upper` the ball already holds the whole box `[0, 1]^n`).
    pub fn default_for(norm: Norm, input_len: usize) -> Self {
        match norm {
            Norm::Linf => Self {
                upper: 1.0,
                tolerance: 1e-6,
                relative: 0.01,
            },
            Norm::L2 => Self {
                upper: (input_len as f64).sqrt(),
                tolerance: 1e-5,
                relative: 0.01,
            },
        }
    }

    /// The bracket's final width around a certified radius `lo`.
    pub fn width(&self, lo: f64) -> f64 {
        self.tolerance.max(self.relative * lo)
    }
}

/// The certified radius: the bounds certify `radius` and do not certify `not_certified`
/// (`not_certified - radius <= search.width(radius)`; both `upper` when it certifies).
#[derive(Debug, Clone, PartialEq)]
pub struct CertifiedRadius {
    /// Largest radius certified (0 when even the image itself is not of the class).
    pub radius: f64,
    /// Whether the image itself is certified (classified as `class`).
    pub certified_at_zero: bool,
    /// The search settings.
    pub search: RadiusSearch,
    /// The smallest radius tried that the bounds do not certify.
    pub not_certified: f64,
    /// Bound evaluations made.
    pub evaluations: usize,
    /// The margins' bounds at `radius`.
    pub at_radius: MarginBounds,
}

/// The largest certified radius (to `search.tolerance`) of `class` around `image`.
pub fn certified_radius(
    net: &Network,
    image: &Tensor,
    class: usize,
    norm: Norm,
    method: Method,
    search: RadiusSearch,
) -> Result<CertifiedRadius> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let valid = positive(search.upper)
        && positive(search.tolerance)
        && search.relative.is_finite()
        && search.relative >= 0.0;
    if !valid {
        return Err(input(format!(
            "the radius search needs upper > 0, tolerance > 0, relative >= 0, got {search:?}"
        )));
    }
    let bounds = |eps| margin_bounds(net, image, class, norm, eps, method);
    let mut evaluations = 1;
    let zero = bounds(0.0)?;
    if !zero.certified() {
        return Ok(CertifiedRadius {
            radius: 0.0,
            certified_at_zero: false,
            not_certified: 0.0,
            search,
            evaluations,
            at_radius: zero,
        });
    }
    let (mut lo, mut hi) = (0.0, search.upper);
    let mut at_lo = zero;
    let top = bounds(hi)?;
    evaluations += 1;
    if top.certified() {
        (lo, at_lo) = (hi, top);
    }
    while hi - lo > search.width(lo) {
        let mid = 0.5 * (lo + hi);
        let b = bounds(mid)?;
        evaluations += 1;
        if b.certified() {
            (lo, at_lo) = (mid, b);
        } else {
            hi = mid;
        }
    }
    Ok(CertifiedRadius {
        radius: lo,
        certified_at_zero: true,
        not_certified: hi,
        search,
        evaluations,
        at_radius: at_lo,
    })
}

/// The fraction of `images` (`N x input shape`) certified for their `labels` at each
/// radius of `eps` (an image not classified as its label is never certified).
pub fn verified_accuracy(
    net: &Network,
    images: &Tensor,
    labels: &[usize],
    norm: Norm,
    eps: &[f64],
    method: Method,
) -> Result<Vec<f64>> {
    let n = images.dim(0)?;
    if n != labels.len() || n == 0 {
        return Err(input(format!(
            "{n} images and {} labels: need the same number, at least one",
            labels.len()
        )));
    }
    let mut certified = vec![0usize; eps.len()];
    for (i, &label) in labels.iter().enumerate() {
        let image = images.get(i)?;
        for (count, &e) in certified.iter_mut().zip(eps) {
            if margin_bounds(net, &image, label, norm, e, method)?.certified() {
                *count += 1;
            }
        }
    }
    Ok(certified.iter().map(|&c| c as f64 / n as f64).collect())
}
