//! Per-thread buffers of the passes, kept between calls on each thread.

use super::variant::Variant;
use super::Tiling;
use crate::kernels::{Elem, Geometry};

/// Per-thread buffers. Transformed tiles are stored channels-last, `[k][tile][c]`, so
/// every transform runs on eight channels at once with contiguous loads and stores.
pub(super) struct Scratch<T> {
    /// One image, zero-padded and channels-last: `hp x wp x C_in`. Only its interior
    /// is ever written, so its borders stay zero.
    pub(super) padded: Vec<T>,
    /// The output gradient, channels-last, zero past the output over whole tiles:
    /// `th*m x tw*m x C_out` (weight gradient only).
    pub(super) grad: Vec<T>,
    /// One image or output channels-last and unpadded: `h*w x C` (either side).
    pub(super) compact: Vec<T>,
    /// A gradient through ReLU, channels-first (same size).
    pub(super) masked: Vec<T>,
    /// The window offsets of an unpooled gradient, channels-last (same size).
    pub(super) codes: Vec<u8>,
    /// `V`: `a² x tiles x C_in` for one round.
    pub(super) v: Vec<T>,
    /// `M` (forward) or the transformed output gradient (backward): `a² x tiles x C_out`.
    pub(super) m: Vec<T>,
}

thread_local! {
    /// Scratch buffers returned by the calls that ran on this thread, one per element
    /// type (more only while calls nest through rayon's work stealing).
    static KEPT: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Makes `v` at least `len` long; with `clear`, zeroes its first `len` values (the
/// rest of a kept buffer holds what an earlier call left there).
pub(super) fn fit<T: Copy>(v: &mut Vec<T>, len: usize, zero: T, clear: bool) {
    if v.len() < len {
        v.clear();
        v.resize(len, zero);
    } else if clear {
        v[..len].fill(zero);
    }
}

impl<T: Elem> Scratch<T> {
    fn empty() -> Self {
        Self {
            padded: Vec::new(),
            grad: Vec::new(),
            compact: Vec::new(),
            masked: Vec::new(),
            codes: Vec::new(),
            v: Vec::new(),
            m: Vec::new(),
        }
    }

    /// This thread's buffers, sized for rounds of `images` images of `g`: allocated
    /// only when an earlier call's are too short, and zeroed only where they are read
    /// before written (the padding of `padded`, the tail tiles of `grad`). Give them
    /// back with [`Scratch::keep`].
    pub(super) fn take<V: Variant>(g: &Geometry, t: &Tiling, images: usize) -> Self {
        let mut s = KEPT
            .with(|kept| {
                let mut kept = kept.borrow_mut();
                let at = kept.iter().position(|b| b.is::<Self>())?;
                kept.swap_remove(at).downcast::<Self>().ok()
            })
            .map_or_else(Self::empty, |b| *b);
        let a2 = V::A * V::A;
        let tiles = images * t.per_image();
        let side = (g.h * g.w).max(g.out_hw()) * g.c_in.max(g.c_out);
        let z = T::ZERO;
        fit(&mut s.padded, t.hp * t.wp * g.c_in, z, true);
        fit(&mut s.grad, t.th * V::M * t.tw * V::M * g.c_out, z, true);
        fit(&mut s.compact, side, z, false);
        fit(&mut s.masked, side, z, false);
        fit(&mut s.codes, side, 0, false);
        fit(&mut s.v, a2 * plane(tiles, g.c_in), z, false);
        fit(&mut s.m, a2 * plane(tiles, g.c_out), z, false);
        s
    }

    /// Keeps the buffers for this thread's next call.
    pub(super) fn keep(self) {
        KEPT.with(|kept| kept.borrow_mut().push(Box::new(self)));
    }
}

/// Elements between the starts of two of the `a²` planes of `V` or `M` (`tiles x c`
/// each): one cache line more than a plane, so that the transforms' `a²` streams, one
/// per plane, do not all fall into the same cache set (planes are often a multiple of
/// 4 KiB, which made them evict each other).
pub(super) fn plane(tiles: usize, c: usize) -> usize {
    tiles * c + 16
}
