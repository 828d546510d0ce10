//! The reference input of Integrated Gradients (the start of the path) and of Occlusion
//! (what an occluded window is set to).

use candle_core::Tensor;

use crate::error::{CamError, Result};

/// A reference image, the same for every image of a batch (so an image's map never
/// depends on the rest of its batch).
#[derive(Debug, Clone)]
pub enum Baseline {
    /// Every pixel set to this value; `Value(0.0)`, black, is the default of Sundararajan
    /// et al. (2017), Zeiler and Fergus (2014) and Captum.
    Value(f64),
    /// One image, `h x w` or `1 x 1 x h x w`, the batch's size.
    Image(Tensor),
}

impl Default for Baseline {
    fn default() -> Self {
        Baseline::Value(0.0)
    }
}

impl Baseline {
    /// The baseline as `N x 1 x h x w` in the dtype of `images` (`N x 1 x h x w`),
    /// contiguous.
    pub(crate) fn for_batch(&self, images: &Tensor) -> Result<Tensor> {
        let (n, _, h, w) = images.dims4()?;
        match self {
            Baseline::Value(v) => {
                if !v.is_finite() {
                    return Err(CamError::NotFinite("the baseline"));
                }
                Ok((images.zeros_like()? + *v)?)
            }
            Baseline::Image(b) => {
                let fits = matches!(b.dims(), [bh, bw] | [1, 1, bh, bw] if (*bh, *bw) == (h, w));
                if !fits {
                    return Err(CamError::Shape(format!(
                        "a baseline image {:?} for images {:?}",
                        b.dims(),
                        images.dims()
                    )));
                }
                Ok(b.to_dtype(images.dtype())?
                    .to_device(images.device())?
                    .reshape((1, 1, h, w))?
                    .broadcast_as((n, 1, h, w))?
                    .contiguous()?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn a_value_or_one_image_broadcasts_over_the_batch() {
        let dev = Device::Cpu;
        let x = Tensor::ones((3, 1, 2, 2), DType::F32, &dev).unwrap();
        let b = Baseline::Value(0.5).for_batch(&x).unwrap();
        assert_eq!(b.dims(), &[3, 1, 2, 2]);
        assert_eq!(
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0.5; 12]
        );
        let img = Tensor::new(&[[1f64, 2.0], [3.0, 4.0]], &dev).unwrap();
        let b = Baseline::Image(img).for_batch(&x).unwrap();
        assert_eq!(b.dtype(), DType::F32);
        assert_eq!(
            b.get(2)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
    }

    #[test]
    fn a_baseline_of_another_size_or_not_finite_is_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::ones((1, 1, 2, 2), DType::F32, &dev).unwrap();
        let wrong = Baseline::Image(Tensor::ones((3, 3), DType::F32, &dev).unwrap());
        assert!(matches!(wrong.for_batch(&x), Err(CamError::Shape(_))));
        assert!(matches!(
            Baseline::Value(f64::NAN).for_batch(&x),
            Err(CamError::NotFinite(_))
        ));
    }
}
