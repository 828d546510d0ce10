//! Margins' lower bounds at one radius, the certified radius by bisection, and verified
//! accuracy over a list of radii.

use candle_core::{Device, Tensor};

use crate::crown::{backward_lower, intermediate, uses_crown};
use crate::error::{input, Result};
use crate::ibp::{intervals, Interval};
use crate::network::{Network, Op};
use crate::region::{as_batch_of_one, Norm, Region};

/// Default cost limit of CROWN's intermediate bounds, in multiply-adds per bound
/// evaluation: layers over it get IBP's bounds (its time on one machine:
/// `docs/PERFORMANCE.md`).
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
    let image = as_batch_of_one(net, image)?;
    let mut one = margin_bounds_batch(net, &image, &[class], norm, &[eps], method)?;
    Ok(one.remove(0))
}

/// [`margin_bounds`] for a batch of images in one pass (`images`: `N x ...`), image `i`
/// for `classes[i]` at radius `eps[i]`. Each image's bounds are its own (the same
/// relaxations as alone); the batch only shares the tensor operations. Memory grows
/// with `N`: [`images_per_batch`] says how many fit a budget.
pub fn margin_bounds_batch(
    net: &Network,
    images: &Tensor,
    classes: &[usize],
    norm: Norm,
    eps: &[f64],
    method: Method,
) -> Result<Vec<MarginBounds>> {
    let k = net.num_classes();
    if let Some(&class) = classes.iter().find(|&&c| c >= k) {
        return Err(input(format!(
            "class {class} is out of range: the network has {k} classes"
        )));
    }
    if classes.len() != eps.len() {
        return Err(input(format!(
            "{} classes and {} radii: need one of each per image",
            classes.len(),
            eps.len()
        )));
    }
    let region = Region::batch(net, images, norm, eps)?;
    let ivs = layer_intervals(net, &region, method)?;
    let spec = spec_matrix(k, classes)?;
    let mut lower = ibp_margins(net, &ivs, &spec, classes)?;
    if let Method::Crown(_) = method {
        let crown = backward_lower(net, net.len(), spec, &ivs, &region)?;
        for (l, c) in lower.iter_mut().zip(crown) {
            *l = l.max(c);
        }
    }
    Ok(classes
        .iter()
        .zip(eps)
        .zip(lower.chunks(k - 1))
        .map(|((&class, &eps), lower)| MarginBounds {
            class,
            norm,
            eps,
            margins: (0..k)
                .filter(|&j| j != class)
                .zip(lower)
                .map(|(other, &lower)| Margin { other, lower })
                .collect(),
        })
        .collect())
}

/// Memory one image takes in a bound evaluation, in bytes: the backward pass holds a few
/// `A` matrices of `(classes - 1) x` the widest layer in `f64`, plus the intervals.
fn bytes_per_image(net: &Network) -> usize {
    let widest = (0..=net.len())
        .map(|i| net.shape(i).iter().product::<usize>())
        .max()
        .unwrap_or(1);
    let layers: usize = (0..=net.len())
        .map(|i| net.shape(i).iter().product::<usize>())
        .sum();
    8 * (4 * (net.num_classes() - 1) * widest + 2 * layers)
}

/// How many images one batched bound evaluation takes so that its memory stays about
/// within `budget_bytes` (at least 1; CROWN's intermediate bounds chunk their own rows).
pub fn images_per_batch(net: &Network, budget_bytes: usize) -> usize {
    (budget_bytes / bytes_per_image(net)).max(1)
}

/// Default memory budget of a batched bound evaluation: 256 MB.
pub const DEFAULT_BATCH_BYTES: usize = 256 << 20;

/// The bounds of every layer's input the method uses (`[0]` the input box, the last
/// the logits), `N x shape` for the region's `N` images.
pub fn layer_intervals(net: &Network, region: &Region, method: Method) -> Result<Vec<Interval>> {
    match method {
        Method::Ibp | Method::Crown(Intermediate::Ibp) => intervals(net, region, |_, _| Ok(None)),
        Method::Crown(Intermediate::Crown { budget }) => intervals(net, region, |i, so_far| {
            intermediate(net, i, so_far, region, budget)
        }),
    }
}

/// Rows `e_class - e_j` for `j != class`, per image: `(N (k - 1)) x k`.
fn spec_matrix(k: usize, classes: &[usize]) -> Result<Tensor> {
    let mut m = Vec::with_capacity(classes.len() * (k - 1) * k);
    for &class in classes {
        for j in (0..k).filter(|&j| j != class) {
            m.extend((0..k).map(|t| match t {
                t if t == class => 1.0,
                t if t == j => -1.0,
                _ => 0.0,
            }));
        }
    }
    Ok(Tensor::from_vec(
        m,
        (classes.len() * (k - 1), k),
        &Device::Cpu,
    )?)
}

/// IBP's margin bounds, per image then other class. With a linear last layer, the
/// margin's row `C W` is folded into it (Gowal et al.), tighter than `l_class - u_j`.
fn ibp_margins(
    net: &Network,
    ivs: &[Interval],
    spec: &Tensor,
    classes: &[usize],
) -> Result<Vec<f64>> {
    let n = net.len();
    let images = classes.len();
    if let Some(Op::Linear { w, b, .. }) = net.ops().last() {
        let k = net.num_classes();
        let (cw, cb) = (spec.matmul(w)?, spec.matmul(&b.unsqueeze(1)?)?.squeeze(1)?);
        let m = cw.dim(1)?;
        let cw = cw.reshape((images, k - 1, m))?;
        let iv = &ivs[n - 1];
        let col = |t: Tensor| t.reshape((images, m, 1));
        let mid = col(((&iv.lower + &iv.upper)? * 0.5)?)?;
        let rad = col(((&iv.upper - &iv.lower)? * 0.5)?)?;
        let lower = (cw.matmul(&mid)? - cw.abs()?.matmul(&rad)?)?.flatten_all()?;
        return Ok((lower + cb)?.to_vec1()?);
    }
    let (l, u) = ivs[n].to_vecs()?;
    let k = l.len() / images;
    let mut out = Vec::with_capacity(images * (k - 1));
    for (g, &class) in classes.iter().enumerate() {
        let (l, u) = (&l[g * k..(g + 1) * k], &u[g * k..(g + 1) * k]);
        out.extend((0..k).filter(|&j| j != class).map(|j| l[class] - u[j]));
    }
    Ok(out)
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
    let image = as_batch_of_one(net, image)?;
    let mut one = certified_radii(net, &image, &[class], norm, method, search)?;
    Ok(one.remove(0))
}

/// Where one image's bisection stands.
enum Search {
    /// Next: the image itself (radius 0).
    Zero,
    /// Next: `search.upper`.
    Top(MarginBounds),
    /// Bisecting `[lo, hi]`; `at_lo` are the bounds at `lo`.
    Bisect {
        lo: f64,
        hi: f64,
        at_lo: MarginBounds,
    },
    /// Finished.
    Done(CertifiedRadius),
}

/// [`certified_radius`] of every image of `images` (`N x ...`) for `classes[i]`, the
/// bisections run in lockstep so each bound evaluation covers every unfinished image
/// (in batches of [`images_per_batch`] under [`DEFAULT_BATCH_BYTES`]). Each image
/// takes the same steps as alone: the same radius and evaluation count.
pub fn certified_radii(
    net: &Network,
    images: &Tensor,
    classes: &[usize],
    norm: Norm,
    method: Method,
    search: RadiusSearch,
) -> Result<Vec<CertifiedRadius>> {
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
    let count = images.dims().first().copied().unwrap_or(0);
    if count != classes.len() {
        return Err(input(format!(
            "{count} images and {} classes: need one class per image",
            classes.len()
        )));
    }
    let batch = images_per_batch(net, DEFAULT_BATCH_BYTES);
    let mut state: Vec<Search> = (0..count).map(|_| Search::Zero).collect();
    let mut evaluations = vec![0usize; count];
    loop {
        // The radius each unfinished image asks for next.
        let asks: Vec<(usize, f64)> = state
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Search::Zero => Some((i, 0.0)),
                Search::Top(_) => Some((i, search.upper)),
                Search::Bisect { lo, hi, .. } => Some((i, 0.5 * (lo + hi))),
                Search::Done(_) => None,
            })
            .collect();
        if asks.is_empty() {
            break;
        }
        for part in asks.chunks(batch) {
            let idx: Vec<u32> = part.iter().map(|&(i, _)| i as u32).collect();
            let idx = Tensor::from_vec(idx, part.len(), images.device())?;
            let sub = images.index_select(&idx, 0)?;
            let cls: Vec<usize> = part.iter().map(|&(i, _)| classes[i]).collect();
            let eps: Vec<f64> = part.iter().map(|&(_, e)| e).collect();
            let bounds = margin_bounds_batch(net, &sub, &cls, norm, &eps, method)?;
            for (&(i, eps), b) in part.iter().zip(bounds) {
                evaluations[i] += 1;
                let s = std::mem::replace(&mut state[i], Search::Zero);
                state[i] = advance(s, eps, b, search, evaluations[i]);
            }
        }
    }
    Ok(state
        .into_iter()
        .map(|s| match s {
            Search::Done(r) => r,
            _ => unreachable!("the loop ends when every search is done"),
        })
        .collect())
}

/// One bisection step of one image, given the bounds `b` at the radius `eps` it asked for.
fn advance(
    s: Search,
    eps: f64,
    b: MarginBounds,
    search: RadiusSearch,
    evaluations: usize,
) -> Search {
    let finish = |lo: f64, hi: f64, at_lo: MarginBounds| {
        if hi - lo > search.width(lo) {
            Search::Bisect { lo, hi, at_lo }
        } else {
            Search::Done(CertifiedRadius {
                radius: lo,
                certified_at_zero: true,
                not_certified: hi,
                search,
                evaluations,
                at_radius: at_lo,
            })
        }
    };
    match s {
        Search::Zero if !b.certified() => Search::Done(CertifiedRadius {
            radius: 0.0,
            certified_at_zero: false,
            not_certified: 0.0,
            search,
            evaluations,
            at_radius: b,
        }),
        Search::Zero => Search::Top(b),
        Search::Top(_) if b.certified() => finish(search.upper, search.upper, b),
        Search::Top(zero) => finish(0.0, search.upper, zero),
        Search::Bisect { hi, .. } if b.certified() => finish(eps, hi, b),
        Search::Bisect { lo, at_lo, .. } => finish(lo, eps, at_lo),
        done @ Search::Done(_) => done,
    }
}

/// The fraction of `images` (`N x input shape`) certified for their `labels` at each
/// radius of `eps` (an image not classified as its label is never certified); the
/// images of each radius bounded in batches.
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
    let batch = images_per_batch(net, DEFAULT_BATCH_BYTES);
    let mut certified = vec![0usize; eps.len()];
    for (count, &e) in certified.iter_mut().zip(eps) {
        for start in (0..n).step_by(batch) {
            let m = batch.min(n - start);
            let sub = images.narrow(0, start, m)?;
            let bounds = margin_bounds_batch(
                net,
                &sub,
                &labels[start..start + m],
                norm,
                &vec![e; m],
                method,
            )?;
            *count += bounds.iter().filter(|b| b.certified()).count();
        }
    }
    Ok(certified.iter().map(|&c| c as f64 / n as f64).collect())
}
