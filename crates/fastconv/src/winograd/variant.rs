//! The Winograd variants F(m x m, r x r): each one's output tile `m`, kernel side `r`
//! (3, or 5 for F(3x3, 5x5)), transformed tile `a = m + r - 1`, and its
//! one-dimensional transforms and their transposes.

use crate::kernels::Elem;

/// Largest transformed tile side (F(5x5, 3x3) and F(3x3, 5x5)).
pub(super) const MAX_A: usize = 7;

/// A tile: small fixed vectors; only the first `A` (or `M`) entries are used.
pub(super) type Row<T> = [T; MAX_A];
/// A transformed tile, row-major with row stride [`MAX_A`].
pub(super) type Tile<T> = [T; MAX_A * MAX_A];

/// One Winograd algorithm F(m x m, r x r): its output tile `M`, its kernel side `R`,
/// its transformed tile `A = M + R - 1`, and the one-dimensional transforms and their
/// transposes.
pub(crate) trait Variant: Sync {
    /// Output tile side.
    const M: usize;
    /// Kernel side.
    const R: usize;
    /// Transformed tile side, `M + R - 1`.
    const A: usize;
    /// `Bᵀ d`: an input patch row or column.
    fn input<T: Elem>(d: Row<T>) -> Row<T>;
    /// `Aᵀ m`: back to `M` outputs.
    fn output<T: Elem>(m: Row<T>) -> Row<T>;
    /// `A y`: the transpose of [`Variant::output`], `M` values to `A`.
    fn output_t<T: Elem>(y: Row<T>) -> Row<T>;
    /// `G g`: `R` kernel taps to `A` values.
    fn kernel<T: Elem>(g: Row<T>) -> Row<T>;
    /// `Gᵀ u`: the transpose of [`Variant::kernel`], `A` values to `R`.
    fn kernel_t<T: Elem>(u: Row<T>) -> Row<T>;
}

/// F(4x4, 3x3), interpolation points 0, ±1, ±2 and infinity.
pub(crate) struct F4;

impl Variant for F4 {
    const M: usize = 4;
    const R: usize = 3;
    const A: usize = 6;

    #[inline(always)]
    fn input<T: Elem>(d: Row<T>) -> Row<T> {
        let (c2, c4, c5) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(5.0));
        // Shared partial sums, as in Lavin's formulation.
        let t0 = d[4] - c4 * d[2];
        let t1 = d[3] - c4 * d[1];
        let t2 = d[4] - d[2];
        let t3 = c2 * (d[3] - d[1]);
        [
            c4 * d[0] - c5 * d[2] + d[4],
            t0 + t1,
            t0 - t1,
            t2 + t3,
            t2 - t3,
            c4 * d[1] - c5 * d[3] + d[5],
            T::ZERO,
        ]
    }

    #[inline(always)]
    fn output<T: Elem>(m: Row<T>) -> Row<T> {
        let z = T::ZERO;
        let (c2, c4, c8) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
        let s12 = m[1] + m[2];
        let d12 = m[1] - m[2];
        let s34 = m[3] + m[4];
        let d34 = m[3] - m[4];
        [
            m[0] + s12 + s34,
            d12 + c2 * d34,
            s12 + c4 * s34,
            d12 + c8 * d34 + m[5],
            z,
            z,
            z,
        ]
    }

    #[inline(always)]
    fn output_t<T: Elem>(y: Row<T>) -> Row<T> {
        let (c2, c4, c8) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
        let even1 = y[0] + y[2];
        let odd1 = y[1] + y[3];
        let even2 = y[0] + c4 * y[2];
        let odd2 = c2 * y[1] + c8 * y[3];
        [
            y[0],
            even1 + odd1,
            even1 - odd1,
            even2 + odd2,
            even2 - odd2,
            y[3],
            T::ZERO,
        ]
    }

    #[inline(always)]
    fn kernel<T: Elem>(g: Row<T>) -> Row<T> {
        let (q, s, t, e) = (
            T::from_f64(0.25),
            T::from_f64(1.0 / 6.0),
            T::from_f64(1.0 / 12.0),
            T::from_f64(1.0 / 24.0),
        );
        let even = g[0] + g[2];
        let far = e * g[0] + s * g[2];
        [
            q * g[0],
            T::ZERO - s * (even + g[1]),
            T::ZERO - s * (even - g[1]),
            far + t * g[1],
            far - t * g[1],
            g[2],
            T::ZERO,
        ]
    }

    #[inline(always)]
    fn kernel_t<T: Elem>(u: Row<T>) -> Row<T> {
        let z = T::ZERO;
        let (q, s, t, e) = (
            T::from_f64(0.25),
            T::from_f64(1.0 / 6.0),
            T::from_f64(1.0 / 12.0),
            T::from_f64(1.0 / 24.0),
        );
        let s12 = u[1] + u[2];
        let s34 = u[3] + u[4];
        [
            q * u[0] - s * s12 + e * s34,
            s * (u[2] - u[1]) + t * (u[3] - u[4]),
            s * (s34 - s12) + u[5],
            z,
            z,
            z,
            z,
        ]
    }
}

/// F(5x5, 3x3), interpolation points 0, ±1, ±2, 1/2 and infinity: 49 multiplies per
/// 25 outputs where F(4x4) needs 36 per 16, so 23 % fewer where the output's side
/// is a multiple of 5 but not of 4 (a 14 x 14 output takes 9 tiles of 15 x 15 instead
/// of 16 of 16 x 16). Its f32 rounding error is about 1.5 times F(4x4)'s. The
/// matrices come from the Toom-Cook construction (`Aᵀ` the powers of the points, `G`
/// divided by the products of the points' differences, `Bᵀ` solved so that the
/// algorithm is exact); the tests check the identity and the transposes.
pub(crate) struct F5;

impl Variant for F5 {
    const M: usize = 5;
    const R: usize = 3;
    const A: usize = 7;

    #[inline(always)]
    fn input<T: Elem>(d: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let (half, c1_5, c2, c2_5, c4, c5) = (c(0.5), c(1.5), c(2.0), c(2.5), c(4.0), c(5.0));
        // Rows 1-4 (points ±1, ±2) as even and odd parts that share terms.
        let t = d[2] - c2 * d[3];
        let u = d[1] - c2 * d[2];
        let even2 = half * (t - d[4]) + d[5];
        let even1 = even2 + c1_5 * t;
        let odd2 = u - d[3] + c2 * d[4];
        let odd1 = half * odd2 + c1_5 * u;
        let r5 = c4 * d[1] - c5 * d[3] + d[5];
        [
            r5 - c2 * d[0] + c2_5 * d[2] - half * d[4],
            even1 + odd1,
            even1 - odd1,
            even2 + odd2,
            even2 - odd2,
            r5,
            c4 * d[2] - c5 * d[4] - half * r5 + d[6],
        ]
    }

    #[inline(always)]
    fn output<T: Elem>(m: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let z = T::ZERO;
        let s12 = m[1] + m[2];
        let d12 = m[1] - m[2];
        let s34 = m[3] + m[4];
        let d34 = m[3] - m[4];
        [
            m[0] + s12 + s34 + m[5],
            d12 + c(2.0) * d34 + c(0.5) * m[5],
            s12 + c(4.0) * s34 + c(0.25) * m[5],
            d12 + c(8.0) * d34 + c(0.125) * m[5],
            s12 + c(16.0) * s34 + c(0.0625) * m[5] + m[6],
            z,
            z,
        ]
    }

    #[inline(always)]
    fn output_t<T: Elem>(y: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let even1 = y[0] + y[2] + y[4];
        let odd1 = y[1] + y[3];
        let even2 = y[0] + c(4.0) * y[2] + c(16.0) * y[4];
        let odd2 = c(2.0) * y[1] + c(8.0) * y[3];
        [
            y[0],
            even1 + odd1,
            even1 - odd1,
            even2 + odd2,
            even2 - odd2,
            y[0] + c(0.5) * y[1] + c(0.25) * y[2] + c(0.125) * y[3] + c(0.0625) * y[4],
            y[4],
        ]
    }

    #[inline(always)]
    fn kernel<T: Elem>(g: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let two = c(2.0);
        let four = c(4.0);
        [
            c(-0.5) * g[0],
            c(-1.0 / 3.0) * (g[0] + g[1] + g[2]),
            c(1.0 / 9.0) * (g[0] - g[1] + g[2]),
            c(1.0 / 36.0) * (g[0] + two * g[1] + four * g[2]),
            c(-1.0 / 60.0) * (g[0] - two * g[1] + four * g[2]),
            c(8.0 / 45.0) * (four * g[0] + two * g[1] + g[2]),
            g[2],
        ]
    }

    #[inline(always)]
    fn kernel_t<T: Elem>(u: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let z = T::ZERO;
        let third = c(-1.0 / 3.0) * u[1];
        let ninth = c(1.0 / 9.0) * u[2];
        [
            c(-0.5) * u[0] + third + ninth + c(1.0 / 36.0) * u[3] - c(1.0 / 60.0) * u[4]
                + c(32.0 / 45.0) * u[5],
            third - ninth + c(1.0 / 18.0) * u[3] + c(1.0 / 30.0) * u[4] + c(16.0 / 45.0) * u[5],
            third + ninth + c(1.0 / 9.0) * u[3] - c(1.0 / 15.0) * u[4]
                + c(8.0 / 45.0) * u[5]
                + u[6],
            z,
            z,
            z,
            z,
        ]
    }
}

/// F(3x3, 5x5), on F(5x5, 3x3)'s seven points 0, ±1, ±2, 1/2 and infinity, and so on
/// its input transform `Bᵀ` (which depends on the points alone): 49 multiplies per 9
/// outputs where the direct convolution needs 225, for the 5x5 layers (the oracle's).
/// `G` evaluates the five taps at the points, scaled by F(5x5)'s factors; `Aᵀ` holds the
/// powers 0 to 2 of the points, the point at infinity feeding the last output.
pub(crate) struct F3R5;

/// The factors that scale `G`'s rows (one per point, in `Bᵀ`'s order), the ones
/// F(5x5, 3x3)'s `G` carries, so that `Bᵀ` is the same.
const F3R5_SCALE: [f64; 7] = [
    -0.5,
    -1.0 / 3.0,
    1.0 / 9.0,
    1.0 / 36.0,
    -1.0 / 60.0,
    32.0 / 45.0,
    1.0,
];

impl Variant for F3R5 {
    const M: usize = 3;
    const R: usize = 5;
    const A: usize = 7;

    #[inline(always)]
    fn input<T: Elem>(d: Row<T>) -> Row<T> {
        F5::input(d)
    }

    #[inline(always)]
    fn output<T: Elem>(m: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let z = T::ZERO;
        let s12 = m[1] + m[2];
        let d12 = m[1] - m[2];
        let s34 = m[3] + m[4];
        let d34 = m[3] - m[4];
        [
            m[0] + s12 + s34 + m[5],
            d12 + c(2.0) * d34 + c(0.5) * m[5],
            s12 + c(4.0) * s34 + c(0.25) * m[5] + m[6],
            z,
            z,
            z,
            z,
        ]
    }

    #[inline(always)]
    fn output_t<T: Elem>(y: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let even1 = y[0] + y[2];
        let even2 = y[0] + c(4.0) * y[2];
        let odd2 = c(2.0) * y[1];
        [
            y[0],
            even1 + y[1],
            even1 - y[1],
            even2 + odd2,
            even2 - odd2,
            y[0] + c(0.5) * y[1] + c(0.25) * y[2],
            y[2],
        ]
    }

    #[inline(always)]
    fn kernel<T: Elem>(g: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let f = F3R5_SCALE;
        // Even and odd parts at ±1 and ±2.
        let e1 = g[0] + g[2] + g[4];
        let o1 = g[1] + g[3];
        let e2 = g[0] + c(4.0) * g[2] + c(16.0) * g[4];
        let o2 = c(2.0) * g[1] + c(8.0) * g[3];
        let half = g[0] + c(0.5) * g[1] + c(0.25) * g[2] + c(0.125) * g[3] + c(0.0625) * g[4];
        [
            c(f[0]) * g[0],
            c(f[1]) * (e1 + o1),
            c(f[2]) * (e1 - o1),
            c(f[3]) * (e2 + o2),
            c(f[4]) * (e2 - o2),
            c(f[5]) * half,
            g[4],
        ]
    }

    #[inline(always)]
    fn kernel_t<T: Elem>(u: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let z = T::ZERO;
        let f = F3R5_SCALE;
        // Each point's scaled value, then the powers of the points.
        let v: [T; 6] = [
            c(f[0]) * u[0],
            c(f[1]) * u[1],
            c(f[2]) * u[2],
            c(f[3]) * u[3],
            c(f[4]) * u[4],
            c(f[5]) * u[5],
        ];
        let s1 = v[1] + v[2];
        let d1 = v[1] - v[2];
        let s2 = v[3] + v[4];
        let d2 = v[3] - v[4];
        [
            v[0] + s1 + s2 + v[5],
            d1 + c(2.0) * d2 + c(0.5) * v[5],
            s1 + c(4.0) * s2 + c(0.25) * v[5],
            d1 + c(8.0) * d2 + c(0.125) * v[5],
            s1 + c(16.0) * s2 + c(0.0625) * v[5] + u[6],
            z,
            z,
        ]
    }
}

/// Whether F(5x5, 3x3) computes an `ho x wo` output with fewer transformed values
/// (and so fewer multiplies) than F(4x4, 3x3); ties go to F(4x4), the more accurate.
pub(crate) fn prefers_f5(ho: usize, wo: usize) -> bool {
    let cost = |m: usize, a: usize| ho.div_ceil(m) * wo.div_ceil(m) * a * a;
    cost(5, 7) < cost(4, 6)
}

/// `out = F src Fᵀ` for a one-dimensional map `f` from `n_in` to `n_out` values:
/// `f` on every column of the `n_in x n_in` tile, then on every row.
#[inline(always)]
pub(super) fn both<T: Elem>(
    src: &Tile<T>,
    n_in: usize,
    n_out: usize,
    f: impl Fn(Row<T>) -> Row<T>,
) -> Tile<T> {
    let mut mid = [T::ZERO; MAX_A * MAX_A];
    for col in 0..n_in {
        let mut v = [T::ZERO; MAX_A];
        for (r, e) in v.iter_mut().enumerate().take(n_in) {
            *e = src[r * MAX_A + col];
        }
        let t = f(v);
        for (r, &e) in t.iter().enumerate().take(n_out) {
            mid[r * MAX_A + col] = e;
        }
    }
    let mut out = [T::ZERO; MAX_A * MAX_A];
    for row in 0..n_out {
        let mut v = [T::ZERO; MAX_A];
        v[..n_in].copy_from_slice(&mid[row * MAX_A..row * MAX_A + n_in]);
        let t = f(v);
        out[row * MAX_A..row * MAX_A + n_out].copy_from_slice(&t[..n_out]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense matrix of a one-dimensional map, column by column.
    fn matrix(f: impl Fn(Row<f64>) -> Row<f64>, n_in: usize, n_out: usize) -> Vec<Vec<f64>> {
        let mut m = vec![vec![0.0; n_in]; n_out];
        for j in 0..n_in {
            let mut e = [0.0; MAX_A];
            e[j] = 1.0;
            let col = f(e);
            for (i, row) in m.iter_mut().enumerate() {
                row[j] = col[i];
            }
        }
        m
    }

    fn transposes_agree<V: Variant>() {
        let a = matrix(V::output, V::A, V::M);
        let at = matrix(V::output_t, V::M, V::A);
        let g = matrix(V::kernel, V::R, V::A);
        let gt = matrix(V::kernel_t, V::A, V::R);
        for i in 0..V::M {
            for j in 0..V::A {
                assert_eq!(a[i][j], at[j][i], "output transpose ({i}, {j})");
            }
        }
        for i in 0..V::A {
            for j in 0..V::R {
                assert!((g[i][j] - gt[j][i]).abs() < 1e-15, "kernel transpose");
            }
        }
    }

    /// The one-dimensional identity `Aᵀ[(G g) ⊙ (Bᵀ d)] = correlation of d with g`.
    fn computes_correlation<V: Variant>() {
        let d: Vec<f64> = (0..V::A).map(|i| (i as f64 * 0.37).sin() + 0.2).collect();
        let g = [0.3, -1.1, 0.7, 0.45, -0.6];
        let mut dv = [0.0; MAX_A];
        dv[..V::A].copy_from_slice(&d);
        let mut gv = [0.0; MAX_A];
        gv[..V::R].copy_from_slice(&g[..V::R]);
        let (bd, gg) = (V::input(dv), V::kernel(gv));
        let mut prod = [0.0; MAX_A];
        for i in 0..V::A {
            prod[i] = bd[i] * gg[i];
        }
        let y = V::output(prod);
        for i in 0..V::M {
            let direct: f64 = (0..V::R).map(|j| d[i + j] * g[j]).sum();
            assert!(
                (y[i] - direct).abs() < 1e-13,
                "output {i}: {} vs {direct}",
                y[i]
            );
        }
    }

    #[test]
    fn f4_transforms_are_consistent() {
        transposes_agree::<F4>();
        computes_correlation::<F4>();
    }

    #[test]
    fn f5_transforms_are_consistent() {
        transposes_agree::<F5>();
        computes_correlation::<F5>();
    }

    #[test]
    fn f3r5_transforms_are_consistent() {
        assert_eq!(F3R5::A, F3R5::M + F3R5::R - 1);
        transposes_agree::<F3R5>();
        computes_correlation::<F3R5>();
    }

    /// F(3x3, 5x5) shares F(5x5, 3x3)'s input transform only because both use the
    /// same points and put the same factors into `G`: the identity above checks the
    /// pair with that `Bᵀ`; here, that the identity also holds column by column for
    /// every one of the five taps alone (a wrong row of `G` cancels in no sum).
    #[test]
    fn f3r5_is_exact_for_every_single_tap() {
        for tap in 0..5 {
            let mut gv = [0.0f64; MAX_A];
            gv[tap] = 1.0;
            for start in 0..7 {
                let mut dv = [0.0; MAX_A];
                dv[start] = 1.0;
                let (bd, gg) = (F3R5::input(dv), F3R5::kernel(gv));
                let mut prod = [0.0; MAX_A];
                for i in 0..7 {
                    prod[i] = bd[i] * gg[i];
                }
                let y = F3R5::output(prod);
                for (i, &y) in y.iter().enumerate().take(3) {
                    let want = if i + tap == start { 1.0 } else { 0.0 };
                    assert!(
                        (y - want).abs() < 1e-13,
                        "tap {tap} d[{start}] out {i}: {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn f5_is_chosen_where_it_needs_fewer_multiplies() {
        // 14 x 14: 9 tiles of 49 against 16 of 36; 28 x 28: a tie; 7 x 7: 4 of 49
        // against 4 of 36.
        assert!(prefers_f5(14, 14));
        assert!(!prefers_f5(28, 28));
        assert!(!prefers_f5(7, 7));
        assert!(prefers_f5(10, 10));
    }
}
