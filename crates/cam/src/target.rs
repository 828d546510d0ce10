//! Which class a map is computed for.

use candle_core::Tensor;

use crate::error::{CamError, Result};

/// The class (or classes) each image's map explains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The same class for every image.
    Class(usize),
    /// Each image's arg-max class (ties go to the lowest index, as `argmax`).
    Predicted,
    /// One class per image, in batch order.
    PerImage(Vec<usize>),
    /// Every class at once: maps come out `N x num_classes x h x w`.
    AllClasses,
}

/// The classes the maps of a batch were computed for, resolved from a [`Target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapClasses {
    /// One map per image, for this class (one entry per image); maps are `N x h x w`.
    PerImage(Vec<usize>),
    /// One map per class `0..num_classes` for every image; maps are `N x num_classes x h x w`.
    All(usize),
}

impl MapClasses {
    /// The classes of one image's maps, in the order of the maps' class axis.
    pub fn classes_of(&self, image: usize) -> Vec<usize> {
        match self {
            MapClasses::PerImage(c) => c.get(image).map(|&c| vec![c]).unwrap_or_default(),
            MapClasses::All(n) => (0..*n).collect(),
        }
    }

    /// Maps per image (1, or the number of classes).
    pub fn maps_per_image(&self) -> usize {
        match self {
            MapClasses::PerImage(_) => 1,
            MapClasses::All(n) => *n,
        }
    }
}

impl Target {
    /// Resolves the target against a batch's logits (`N x num_classes`), checking
    /// every class index and the length of a per-image list.
    pub fn resolve(&self, logits: &Tensor) -> Result<MapClasses> {
        let (n, num_classes) = logits.dims2()?;
        let check = |class: usize| {
            if class < num_classes {
                Ok(class)
            } else {
                Err(CamError::ClassOutOfRange { class, num_classes })
            }
        };
        Ok(match self {
            Target::Class(c) => MapClasses::PerImage(vec![check(*c)?; n]),
            Target::Predicted => {
                let predicted: Vec<u32> = logits.argmax(1)?.to_vec1()?;
                MapClasses::PerImage(predicted.into_iter().map(|c| c as usize).collect())
            }
            Target::PerImage(classes) => {
                if classes.len() != n {
                    return Err(CamError::Shape(format!(
                        "{} target classes for a batch of {n} images",
                        classes.len()
                    )));
                }
                MapClasses::PerImage(classes.iter().map(|&c| check(c)).collect::<Result<_>>()?)
            }
            Target::AllClasses => MapClasses::All(num_classes),
        })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn logits() -> Tensor {
        Tensor::new(&[[0f32, 2.0, 1.0], [3.0, 0.0, 1.0]], &Device::Cpu).unwrap()
    }

    #[test]
    fn predicted_is_the_arg_max() {
        let classes = Target::Predicted.resolve(&logits()).unwrap();
        assert_eq!(classes, MapClasses::PerImage(vec![1, 0]));
        assert_eq!(classes.maps_per_image(), 1);
    }

    #[test]
    fn out_of_range_class_and_wrong_length_are_errors() {
        assert!(matches!(
            Target::Class(3).resolve(&logits()),
            Err(CamError::ClassOutOfRange {
                class: 3,
                num_classes: 3
            })
        ));
        assert!(matches!(
            Target::PerImage(vec![0]).resolve(&logits()),
            Err(CamError::Shape(_))
        ));
    }

    #[test]
    fn all_classes_lists_every_class() {
        let classes = Target::AllClasses.resolve(&logits()).unwrap();
        assert_eq!(classes.classes_of(1), vec![0, 1, 2]);
        assert_eq!(classes.maps_per_image(), 3);
    }
}
