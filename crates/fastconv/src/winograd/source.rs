//! Where a pass reads its images or output gradients from: dense batches either way
//! round, or a gradient through ReLU and max-pooling, unpooled as it is read.

use super::lanes::{load, store, Lanes, LANES, WIDE_LANES};
use crate::kernels::{relu_grad, transpose, Elem};
use crate::options::BatchLayout;

/// Copies one `C x h x w` image (channels-first) into the channels-last buffer
/// `rows x cols x C` at `(top, left)`, through `tmp` (`h*w x C`); the rest of the
/// buffer is left as it is.
#[inline(always)]
pub(super) fn to_channels_last<T: Elem>(
    src: &[T],
    (c, h, w): (usize, usize, usize),
    cols: usize,
    (top, left): (usize, usize),
    tmp: &mut [T],
    dst: &mut [T],
) {
    transpose(src, (c, h * w, h * w), tmp, c);
    for y in 0..h {
        dst[((y + top) * cols + left) * c..][..w * c].copy_from_slice(&tmp[y * w * c..][..w * c]);
    }
}

/// Where a pass reads its `C x H x W` images (or output gradients) from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a, T> {
    /// The images themselves, channels-first (`C x H x W` each).
    Dense(&'a [T]),
    /// The images themselves, channels-last (`H x W x C` each).
    ChannelsLast(&'a [T]),
    /// The gradient with respect to the input of `max_pool(relu(.), k)` (of `relu`
    /// alone when `k == 1`), built on the fly from the gradient of its output (`grad`),
    /// its output (`y`, ReLU's mask) and each window's first maximum (`codes`, as
    /// [`forward`](super::forward()) records them; empty when `k == 1`), all
    /// `C x H/k x W/k` per image (`H/k x W/k x C` when `layout` is channels-last):
    /// never materialised at full size.
    ThroughRelu {
        grad: &'a [T],
        y: &'a [T],
        codes: &'a [u8],
        k: usize,
        layout: BatchLayout,
    },
}

impl<'a, T: Elem> Source<'a, T> {
    /// Images `from..from + count` (or as many as there are), each `len` values at
    /// full size.
    pub(crate) fn images(self, len: usize, from: usize, count: usize) -> Self {
        let cut = |l: usize, n: usize| {
            from.saturating_mul(l).min(n)..(from + count).saturating_mul(l).min(n)
        };
        match self {
            Source::Dense(x) => Source::Dense(&x[cut(len, x.len())]),
            Source::ChannelsLast(x) => Source::ChannelsLast(&x[cut(len, x.len())]),
            Source::ThroughRelu {
                grad,
                y,
                codes,
                k,
                layout,
            } => {
                let l = len / (k * k);
                Source::ThroughRelu {
                    grad: &grad[cut(l, grad.len())],
                    y: &y[cut(l, y.len())],
                    codes: if k > 1 {
                        &codes[cut(l, codes.len())]
                    } else {
                        codes
                    },
                    k,
                    layout,
                }
            }
        }
    }

    /// Asks the CPU to bring share `j` of `n` of image `i` (of `len` values at full
    /// size) into cache, without waiting for it: the cache lines of each slice the image
    /// is read from, cut into `n` runs. A pass transforming one image calls it once per
    /// tile for the next one, whose values would otherwise stream in from memory when
    /// [`Source::fill`] reads them (in `perf`, the ReLU mask's read of the output
    /// gradient was the transforms' costliest instruction). Changes no value.
    #[inline(always)]
    pub(super) fn prefetch(self, i: usize, len: usize, (j, n): (usize, usize)) {
        // Image `i`'s `l` values of `s`, as bytes (none past the end).
        fn bytes<T>(s: &[T], i: usize, l: usize) -> (*const u8, usize) {
            let s = s.get(i * l..(i + 1) * l).unwrap_or(&[]);
            (s.as_ptr().cast::<u8>(), std::mem::size_of_val(s))
        }
        let none = (std::ptr::null(), 0);
        let spans = match self {
            Source::Dense(x) | Source::ChannelsLast(x) => [bytes(x, i, len), none, none],
            Source::ThroughRelu {
                grad, y, codes, k, ..
            } => {
                let l = len / (k * k);
                let codes = if k > 1 { bytes(codes, i, l) } else { none };
                [bytes(grad, i, l), bytes(y, i, l), codes]
            }
        };
        for (start, size) in spans {
            let lines = size.div_ceil(64);
            for line in lines * j / n.max(1)..lines * (j + 1) / n.max(1) {
                prefetch_line(start.wrapping_add(line * 64));
            }
        }
    }

    /// How many images of `len` values (at full size) there are.
    pub(super) fn count(self, len: usize) -> usize {
        match self {
            Source::Dense(x) | Source::ChannelsLast(x) => x.len() / len,
            Source::ThroughRelu { grad, k, .. } => grad.len() / (len / (k * k)),
        }
    }

    /// Writes image `i`, `c x h x w`, channels-last into `dst` (`cols` pixels per row)
    /// with its corner at `(top, left)`, through the scratch `tmp` and `masked`
    /// (`h*w x c` values each) and `codes_cl` (as many bytes); the rest of `dst` is left
    /// as it is. `wide`: a channels-last unpooling may run on [`WIDE_LANES`] (the
    /// caller's round is compiled for AVX-512 and `c` is a multiple of sixteen).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fill(
        self,
        i: usize,
        (c, h, w): (usize, usize, usize),
        cols: usize,
        (top, left): (usize, usize),
        (tmp, masked, codes_cl): (&mut [T], &mut [T], &mut [u8]),
        dst: &mut [T],
        wide: bool,
    ) {
        let (grad, y, codes, k) = match self {
            Source::Dense(x) => {
                let len = c * h * w;
                to_channels_last(
                    &x[i * len..(i + 1) * len],
                    (c, h, w),
                    cols,
                    (top, left),
                    tmp,
                    dst,
                );
                return;
            }
            Source::ChannelsLast(x) => {
                let (row, len) = (w * c, c * h * w);
                let x = &x[i * len..(i + 1) * len];
                for (yy, src) in x.chunks_exact(row).enumerate() {
                    dst[((yy + top) * cols + left) * c..][..row].copy_from_slice(src);
                }
                return;
            }
            Source::ThroughRelu {
                grad,
                y,
                codes,
                k,
                layout,
            } => {
                if layout.is_channels_last() {
                    let image = (grad, y, codes, i);
                    let shape = (c, h, w, k);
                    if wide {
                        unpool_channels_last::<T, WIDE_LANES>(image, shape, cols, (top, left), dst);
                    } else {
                        unpool_channels_last::<T, LANES>(image, shape, cols, (top, left), dst);
                    }
                    return;
                }
                (grad, y, codes, k)
            }
        };
        let (ph, pw) = (h / k, w / k);
        let (hw, len) = (ph * pw, c * ph * pw);
        let (grad, y) = (&grad[i * len..(i + 1) * len], &y[i * len..(i + 1) * len]);
        // Without pooling every value is its own window's maximum.
        // ReLU's mask, channels-first, then channels-last.
        for ((m, &g), &y) in masked.iter_mut().zip(grad).zip(y) {
            *m = relu_grad(g, y);
        }
        if k == 1 {
            to_channels_last(&masked[..len], (c, h, w), cols, (top, left), tmp, dst);
            return;
        }
        transpose(&masked[..len], (c, hw, hw), tmp, c);
        // Each value's window offset, channels-last.
        let codes = &codes[i * len..(i + 1) * len];
        for p in 0..hw {
            for ch in 0..c {
                codes_cl[p * c + ch] = codes[ch * hw + p];
            }
        }
        for py in 0..ph {
            for px in 0..pw {
                let p = py * pw + px;
                for c0 in (0..c).step_by(LANES) {
                    let g: Lanes<T> = load(tmp, p * c + c0);
                    // Zero where ReLU blocks it, so its window offset does not matter.
                    let at = &codes_cl[p * c + c0..p * c + c0 + LANES];
                    for d in 0..k * k {
                        let mut v = Lanes::<T>::ZERO;
                        for ((v, &g), &at) in v.0.iter_mut().zip(&g.0).zip(at) {
                            if usize::from(at) == d {
                                *v = g;
                            }
                        }
                        let (yy, xx) = (top + py * k + d / k, left + px * k + d % k);
                        store(v, dst, (yy * cols + xx) * c + c0);
                    }
                }
            }
        }
    }
}

/// [`Source::fill`] for a channels-last [`Source::ThroughRelu`]: image `i` of
/// (`grad`, `y`, `codes`), `h/k x w/k x c` each, masked by ReLU and spread over each
/// window's maximum, into `dst` (`cols` pixels per row) with its corner at
/// `(top, left)`, `L` channels at a time (`c` a multiple of `L`). Every pixel of the
/// `h x w` block is written, so the rest of each window gets zeros: each of a window's
/// `k²` pixels is one whole store, the masked gradient in the lanes whose maximum is
/// there and zeros in the others (a store per lane into zeroed pixels ran at a third
/// of the speed, and `perf` put the unpooling at ~10 % of a training step).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // index loops on purpose (see `lanes_op!`)
pub(super) fn unpool_channels_last<T: Elem, const L: usize>(
    (grad, y, codes, i): (&[T], &[T], &[u8], usize),
    (c, h, w, k): (usize, usize, usize, usize),
    cols: usize,
    (top, left): (usize, usize),
    dst: &mut [T],
) {
    let (ph, pw) = (h / k, w / k);
    let len = ph * pw * c;
    let (grad, y) = (&grad[i * len..(i + 1) * len], &y[i * len..(i + 1) * len]);
    let codes = if k > 1 {
        &codes[i * len..(i + 1) * len]
    } else {
        &[][..]
    };
    // Each window offset's distance from the window's corner in `dst` (no division in
    // the loop below; windows divide Winograd's 4x4 tiles, so `k <= 4`).
    assert!(k <= 4, "Winograd pooling window above 4");
    assert!(
        c.is_multiple_of(L),
        "unpooling: channels not a multiple of the lanes"
    );
    let mut offsets = [0usize; 16];
    for (d, o) in offsets.iter_mut().enumerate().take(k * k) {
        *o = ((d / k) * cols + d % k) * c;
    }
    for py in 0..ph {
        for px in 0..pw {
            let p = py * pw + px;
            for c0 in (0..c).step_by(L) {
                let at = p * c + c0;
                let (g, yv): (Lanes<T, L>, Lanes<T, L>) = (load(grad, at), load(y, at));
                // ReLU's mask.
                let mut m = Lanes::<T, L>::ZERO;
                for l in 0..L {
                    m.0[l] = relu_grad(g.0[l], yv.0[l]);
                }
                if k == 1 {
                    store(m, dst, ((top + py) * cols + left + px) * c + c0);
                    continue;
                }
                let mut code = [0u8; L];
                code.copy_from_slice(&codes[at..at + L]);
                let corner = ((top + py * k) * cols + left + px * k) * c + c0;
                for (d, &o) in offsets[..k * k].iter().enumerate() {
                    let mut v = Lanes::<T, L>::ZERO;
                    for l in 0..L {
                        if usize::from(code[l]) == d {
                            v.0[l] = m.0[l];
                        }
                    }
                    store(v, dst, corner + o);
                }
            }
        }
    }
}

/// Asks the CPU to bring the cache line holding `at` into its caches (a hint: it never
/// faults, whatever the address).
#[inline(always)]
fn prefetch_line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that reads nothing architecturally and cannot fault.
    #[allow(unsafe_code, unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}
