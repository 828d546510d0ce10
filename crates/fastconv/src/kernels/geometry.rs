//! The shapes of one convolution, checked once and shared by every pass.

/// Shapes of one convolution: `n x c_in x h x w` input, `c_out x c_in x k x k` kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geometry {
    /// Checks the shapes and derives the output size (PyTorch's floor rule).
    pub fn new(
        x: (usize, usize, usize, usize),
        kernel: (usize, usize, usize, usize),
        stride: usize,
        pad: usize,
    ) -> std::result::Result<Self, String> {
        let (n, c_in, h, w) = x;
        let (c_out, kc, kh, kw) = kernel;
        if kc != c_in {
            return Err(format!(
                "kernel has {kc} input channels, the input has {c_in}"
            ));
        }
        if kh != kw || kh == 0 {
            return Err(format!("kernel {kh}x{kw} is not square"));
        }
        if stride == 0 {
            return Err("stride 0".into());
        }
        let k = kh;
        if h + 2 * pad < k || w + 2 * pad < k {
            return Err(format!(
                "kernel {k}x{k} is larger than the padded {}x{} input",
                h + 2 * pad,
                w + 2 * pad
            ));
        }
        Ok(Self {
            n,
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
            ho: (h + 2 * pad - k) / stride + 1,
            wo: (w + 2 * pad - k) / stride + 1,
        })
    }

    /// Rows of the im2col matrix: `c_in * k * k`.
    pub fn ckk(&self) -> usize {
        self.c_in * self.k * self.k
    }

    /// Elements of one input image.
    pub fn in_len(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// Output pixels of one channel.
    pub fn out_hw(&self) -> usize {
        self.ho * self.wo
    }

    /// Elements of one output image.
    pub fn out_len(&self) -> usize {
        self.c_out * self.out_hw()
    }

    /// Multiply-adds of the whole forward pass, times two.
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.out_len() * self.ckk()) as f64
    }

    /// The valid output columns `lo..hi` of kernel column `kx` at stride 1, where the
    /// input column `ox + kx - pad` lies inside the image.
    pub(crate) fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(kx).min(self.wo);
        let hi = (self.w + self.pad).saturating_sub(kx).min(self.wo);
        (lo, hi.max(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_rejects_mismatches() {
        assert!(Geometry::new((1, 2, 5, 5), (3, 1, 3, 3), 1, 1).is_err());
        assert!(Geometry::new((1, 2, 5, 5), (3, 2, 3, 2), 1, 1).is_err());
        assert!(Geometry::new((1, 2, 5, 5), (3, 2, 3, 3), 0, 1).is_err());
        assert!(Geometry::new((1, 2, 2, 2), (3, 2, 5, 5), 1, 0).is_err());
        let g = Geometry::new((1, 2, 28, 28), (3, 2, 3, 3), 2, 1).unwrap();
        assert_eq!((g.ho, g.wo), (14, 14));
    }
}
