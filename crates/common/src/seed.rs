//! Seeds from identities: every random draw of the workspace that must not depend on
//! batch order, batch size or threads is seeded by mixing the run's seed with the
//! identity of what it is drawn for (an example, a sample, an image's pixels). One
//! implementation of the two mixes used: SplitMix64's finaliser (Steele, Lea and Flood,
//! 2014) and 64-bit FNV-1a.

/// The golden-ratio increment of SplitMix64 (also the first identity's multiplier).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a bijective mix of 64 bits.
pub fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One SplitMix64 step from `x`: the increment, then [`finalize`].
pub fn splitmix64(x: u64) -> u64 {
    finalize(x.wrapping_add(GOLDEN))
}

/// The seed of draw `sample` for example `example` of a run seeded `seed`: the three
/// multiplied apart and [`finalize`]d, so it depends on nothing else.
pub fn identity_seed(seed: u64, example: u64, sample: u64) -> u64 {
    finalize(seed ^ example.wrapping_mul(GOLDEN) ^ sample.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
}

/// 64-bit FNV-1a of a byte stream.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mixes_match_their_published_values() {
        // SplitMix64 from state 0: the first output of the reference generator.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        // FNV-1a test vectors (empty string, "a").
        assert_eq!(fnv1a([]), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xAF63_DC4C_8601_EC8C);
    }

    #[test]
    fn identity_seeds_differ_in_every_part_and_repeat() {
        let s = identity_seed(7, 12, 3);
        assert_eq!(s, identity_seed(7, 12, 3));
        assert_ne!(s, identity_seed(8, 12, 3));
        assert_ne!(s, identity_seed(7, 13, 3));
        assert_ne!(s, identity_seed(7, 12, 4));
        // Swapping example and sample is another seed (different multipliers).
        assert_ne!(identity_seed(7, 1, 2), identity_seed(7, 2, 1));
    }
}
