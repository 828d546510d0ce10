//! Named conventions for the values of a map: signed, ReLU, min-max to [0, 1].
//!
//! The official CAM code (Zhou et al.) min-max normalises the signed map; pytorch-grad-cam
//! (and Grad-CAM's definition) applies ReLU first. Both are offered, by name.
//!
//! Degenerate maps are reported, never hidden: a map with no positive value under a
//! ReLU convention is [`MapStatus::NoPositiveEvidence`], a map whose values are all
//! equal is [`MapStatus::Constant`]. Min-max maps such maps to all zeros (no division
//! by zero happens: the range is replaced by 1 where it is 0), and the status says so;
//! [`ScaledMaps::require_informative`] turns any such map into an error.

use candle_core::{DType, Tensor};

use crate::error::{CamError, Result};
use crate::map_status::MapStatus;

/// How raw map values become the values that are drawn or compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapScaling {
    /// The signed weighted sum, untouched (positive: evidence for the class).
    Raw,
    /// `max(map, 0)`: Grad-CAM's definition, no rescaling.
    Relu,
    /// `(map - min) / (max - min)` of the signed map: the official CAM code's convention.
    MinMax,
    /// ReLU, then min-max: pytorch-grad-cam's convention (its `scale_cam_image`).
    #[default]
    ReluMinMax,
}

impl MapScaling {
    fn applies_relu(self) -> bool {
        matches!(self, MapScaling::Relu | MapScaling::ReluMinMax)
    }

    fn applies_min_max(self) -> bool {
        matches!(self, MapScaling::MinMax | MapScaling::ReluMinMax)
    }
}

/// Maps under one convention, same shape as the input, with one status per map
/// (row-major over every axis but the last two).
#[derive(Debug, Clone)]
pub struct ScaledMaps {
    /// The scaled maps.
    pub maps: Tensor,
    /// The status of every map.
    pub statuses: Vec<MapStatus>,
    /// The convention applied.
    pub scaling: MapScaling,
}

impl ScaledMaps {
    /// The maps, or [`CamError::DegenerateMap`] naming the first map that is not
    /// [`MapStatus::Informative`].
    pub fn require_informative(&self) -> Result<&Tensor> {
        match self
            .statuses
            .iter()
            .position(|s| *s != MapStatus::Informative)
        {
            Some(index) => Err(CamError::DegenerateMap {
                index,
                status: self.statuses[index],
            }),
            None => Ok(&self.maps),
        }
    }
}

/// Applies `scaling` to every map of a tensor whose last two axes are `h x w`
/// (`h x w`, `N x h x w`, `N x T x h x w`, ...).
pub fn scale_maps(maps: &Tensor, scaling: MapScaling) -> Result<ScaledMaps> {
    let dims = maps.dims();
    if dims.len() < 2 {
        return Err(CamError::Shape(format!(
            "maps need two spatial axes, got {dims:?}"
        )));
    }
    let pixels = dims[dims.len() - 2] * dims[dims.len() - 1];
    let count = dims[..dims.len() - 2].iter().product::<usize>();
    if pixels == 0 {
        return Err(CamError::Shape(format!("empty maps {dims:?}")));
    }
    let flat = maps.reshape((count, pixels))?;
    let flat = if scaling.applies_relu() {
        flat.relu()?
    } else {
        flat
    };
    let min = flat.min_keepdim(1)?;
    let max = flat.max_keepdim(1)?;
    let range = (&max - &min)?;
    let range_values: Vec<f64> = range.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    let max_values: Vec<f64> = max.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    if range_values.iter().any(|v| !v.is_finite()) {
        return Err(CamError::NotFinite("map"));
    }
    let statuses = range_values
        .iter()
        .zip(&max_values)
        .map(|(&range, &max)| {
            if scaling.applies_relu() && max <= 0.0 {
                MapStatus::NoPositiveEvidence
            } else if range == 0.0 {
                MapStatus::Constant
            } else {
                MapStatus::Informative
            }
        })
        .collect();
    let scaled = if scaling.applies_min_max() {
        // A zero range becomes 1: the numerator is exactly 0 there, so the map is 0.
        let safe_range = range.gt(0.0)?.where_cond(&range, &range.ones_like()?)?;
        flat.broadcast_sub(&min)?.broadcast_div(&safe_range)?
    } else {
        flat
    };
    Ok(ScaledMaps {
        maps: scaled.reshape(dims)?,
        statuses,
        scaling,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use proptest::prelude::*;

    use super::*;

    fn tensor(values: &[f64], h: usize, w: usize) -> Tensor {
        Tensor::from_vec(values.to_vec(), (1, h, w), &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn official_cam_and_pytorch_grad_cam_differ_on_signed_maps() {
        let m = tensor(&[-2.0, 0.0, 2.0, 6.0], 2, 2);
        let official = scale_maps(&m, MapScaling::MinMax).unwrap();
        assert_eq!(values(&official.maps), vec![0.0, 0.25, 0.5, 1.0]);
        let pytorch = scale_maps(&m, MapScaling::ReluMinMax).unwrap();
        assert_eq!(values(&pytorch.maps), vec![0.0, 0.0, 1.0 / 3.0, 1.0]);
        let relu = scale_maps(&m, MapScaling::Relu).unwrap();
        assert_eq!(values(&relu.maps), vec![0.0, 0.0, 2.0, 6.0]);
        assert_eq!(relu.statuses, vec![MapStatus::Informative]);
    }

    #[test]
    fn degenerate_maps_are_flagged_not_divided_by_zero() {
        let constant = tensor(&[3.0; 4], 2, 2);
        let s = scale_maps(&constant, MapScaling::MinMax).unwrap();
        assert_eq!(values(&s.maps), vec![0.0; 4]);
        assert_eq!(s.statuses, vec![MapStatus::Constant]);
        assert!(matches!(
            s.require_informative(),
            Err(CamError::DegenerateMap {
                index: 0,
                status: MapStatus::Constant
            })
        ));

        let negative = tensor(&[-1.0, -2.0, -3.0, -0.5], 2, 2);
        let s = scale_maps(&negative, MapScaling::ReluMinMax).unwrap();
        assert_eq!(values(&s.maps), vec![0.0; 4]);
        assert_eq!(s.statuses, vec![MapStatus::NoPositiveEvidence]);
        // The signed convention keeps it, and it is informative there.
        let s = scale_maps(&negative, MapScaling::MinMax).unwrap();
        assert_eq!(s.statuses, vec![MapStatus::Informative]);
        assert!(s.require_informative().is_ok());
    }

    #[test]
    fn nan_is_an_error() {
        let m = tensor(&[f64::NAN, 0.0, 1.0, 2.0], 2, 2);
        assert!(matches!(
            scale_maps(&m, MapScaling::MinMax),
            Err(CamError::NotFinite(_))
        ));
    }

    proptest! {
        #![proptest_config(test_support::seeded(32))]

        #[test]
        fn min_max_lies_in_unit_interval_and_ignores_affine_changes(
            values_in in prop::collection::vec(-100.0f64..100.0, 12),
            scale in 0.01f64..100.0,
            shift in -50.0f64..50.0,
        ) {
            let m = tensor(&values_in, 3, 4);
            for scaling in [MapScaling::MinMax, MapScaling::ReluMinMax] {
                let s = scale_maps(&m, scaling).unwrap();
                for v in values(&s.maps) {
                    prop_assert!((0.0..=1.0).contains(&v));
                }
            }
            let base = values(&scale_maps(&m, MapScaling::MinMax).unwrap().maps);
            let moved = ((&m * scale).unwrap() + shift).unwrap();
            let moved = values(&scale_maps(&moved, MapScaling::MinMax).unwrap().maps);
            for (a, b) in base.iter().zip(&moved) {
                prop_assert!((a - b).abs() < 1e-9, "{a} vs {b}");
            }
            // ReLU then min-max is invariant to positive scaling (not to shifts).
            let base = values(&scale_maps(&m, MapScaling::ReluMinMax).unwrap().maps);
            let scaled = values(&scale_maps(&(&m * scale).unwrap(), MapScaling::ReluMinMax).unwrap().maps);
            for (a, b) in base.iter().zip(&scaled) {
                prop_assert!((a - b).abs() < 1e-9, "{a} vs {b}");
            }
        }
    }
}
