//! Viridis, a perceptually uniform colormap, from an embedded table.
//!
//! The table is matplotlib's viridis (van der Walt and Smith, released CC0) sampled at
//! every fourth of its 256 entries, plus its last entry; values in between are
//! interpolated linearly, which stays within one or two levels of the full table.

/// `(position in 0..=255, [r, g, b])`: matplotlib's viridis entries 0, 4, ..., 252, 255.
const VIRIDIS: [(u8, [u8; 3]); 65] = [
    (0, [68, 1, 84]),
    (4, [69, 6, 90]),
    (8, [70, 12, 95]),
    (12, [71, 18, 101]),
    (16, [71, 24, 106]),
    (20, [72, 29, 111]),
    (24, [72, 34, 115]),
    (28, [71, 39, 119]),
    (32, [71, 44, 123]),
    (36, [70, 49, 126]),
    (40, [69, 54, 129]),
    (44, [67, 59, 131]),
    (48, [66, 64, 133]),
    (52, [64, 68, 135]),
    (56, [62, 73, 137]),
    (60, [60, 77, 138]),
    (64, [58, 82, 139]),
    (68, [56, 86, 139]),
    (72, [54, 90, 140]),
    (76, [52, 94, 141]),
    (80, [50, 98, 141]),
    (84, [49, 102, 141]),
    (88, [47, 106, 141]),
    (92, [45, 110, 142]),
    (96, [44, 114, 142]),
    (100, [42, 118, 142]),
    (104, [40, 122, 142]),
    (108, [39, 125, 142]),
    (112, [38, 129, 142]),
    (116, [36, 133, 141]),
    (120, [35, 137, 141]),
    (124, [33, 140, 141]),
    (128, [32, 144, 140]),
    (132, [31, 148, 139]),
    (136, [30, 152, 138]),
    (140, [30, 155, 137]),
    (144, [30, 159, 136]),
    (148, [31, 163, 134]),
    (152, [33, 167, 132]),
    (156, [36, 170, 130]),
    (160, [40, 174, 127]),
    (164, [44, 177, 125]),
    (168, [50, 181, 122]),
    (172, [56, 185, 118]),
    (176, [62, 188, 115]),
    (180, [69, 191, 111]),
    (184, [77, 194, 107]),
    (188, [85, 198, 102]),
    (192, [94, 201, 97]),
    (196, [103, 204, 92]),
    (200, [112, 206, 86]),
    (204, [121, 209, 81]),
    (208, [131, 211, 75]),
    (212, [141, 214, 68]),
    (216, [151, 216, 62]),
    (220, [162, 218, 55]),
    (224, [173, 220, 48]),
    (228, [183, 221, 41]),
    (232, [194, 223, 34]),
    (236, [205, 224, 29]),
    (240, [215, 226, 25]),
    (244, [225, 227, 24]),
    (248, [236, 228, 26]),
    (252, [246, 230, 31]),
    (255, [253, 231, 37]),
];

/// A colormap for heat maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Colormap {
    /// matplotlib's viridis: dark blue (0) through green to yellow (1).
    #[default]
    Viridis,
}

impl Colormap {
    /// The colour of `t` in [0, 1] (clamped; NaN is drawn as 0).
    pub fn color(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let pos = t * 255.0;
        let upper = VIRIDIS
            .iter()
            .position(|&(p, _)| f32::from(p) >= pos)
            .unwrap_or(VIRIDIS.len() - 1)
            .max(1);
        let (p0, c0) = VIRIDIS[upper - 1];
        let (p1, c1) = VIRIDIS[upper];
        let frac = ((pos - f32::from(p0)) / f32::from(p1 - p0)).clamp(0.0, 1.0);
        let mix =
            |a: u8, b: u8| (f32::from(a) + (f32::from(b) - f32::from(a)) * frac).round() as u8;
        [mix(c0[0], c1[0]), mix(c0[1], c1[1]), mix(c0[2], c1[2])]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_middle_are_matplotlibs() {
        let v = Colormap::Viridis;
        assert_eq!(v.color(0.0), [68, 1, 84]);
        assert_eq!(v.color(1.0), [253, 231, 37]);
        // matplotlib viridis entry 128 of 256: #20908c
        assert_eq!(v.color(128.0 / 255.0), [32, 144, 140]);
        assert_eq!(v.color(f32::NAN), [68, 1, 84]);
        assert_eq!(v.color(7.0), [253, 231, 37]);
    }

    #[test]
    fn lightness_grows_monotonically() {
        let luma = |c: [u8; 3]| {
            0.2126 * f32::from(c[0]) + 0.7152 * f32::from(c[1]) + 0.0722 * f32::from(c[2])
        };
        let mut last = -1.0;
        for i in 0..=100 {
            let l = luma(Colormap::Viridis.color(i as f32 / 100.0));
            assert!(l >= last - 0.5, "step {i}");
            last = l;
        }
    }
}
