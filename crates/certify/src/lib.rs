//! Certified robustness for the project's classifiers: sound lower bounds on the
//! margins `Z_y - Z_j` over a whole ball of inputs, so no point of the ball changes the
//! class; the attack lower bound proved rather than estimated (CLEVER estimates it).
//!
//! - [`Network`]: a model as a checked layer sequence (linear, conv2d with any stride
//!   and padding, ReLU, max-pool, global average pooling, flatten). Models describe
//!   themselves through [`models::LayerSequence`], with their own weight tensors; the
//!   network converts them to `f64` once.
//! - [`Region`]: the Linf or L2 ball around an image intersected with [0, 1] ([`Norm`]).
//! - [`Method`]: IBP (intervals forward), or CROWN (linear bounds backward, CROWN-Ada
//!   ReLU lines, DeepPoly max-pool lines), whose intermediate bounds ([`Intermediate`])
//!   come from CROWN itself where that costs at most a budget, else from IBP. Every
//!   CROWN bound is intersected with IBP's, so CROWN is never looser.
//! - [`margin_bounds`] at one radius, [`certified_radius`] by bisection to a stated
//!   tolerance, [`verified_accuracy`] over a list of radii.
//! - Batched over images: [`margin_bounds_batch`] (each image its own class and radius)
//!   and [`certified_radii`] (the bisections in lockstep), in batches of
//!   [`images_per_batch`] within a memory budget ([`DEFAULT_BATCH_BYTES`]). A batch gives
//!   every image the same bounds as alone; it only shares the tensor operations.
//!
//! Data flow: layers -> [`Network`]; images + norm + eps -> [`Region`] -> IBP intervals
//! of every layer's input (tightened by CROWN where chosen) -> margins' lower bounds
//! (IBP folded into the last linear layer; CROWN from the margin rows backwards) ->
//! [`MarginBounds`]; bisection over eps -> [`CertifiedRadius`].
//!
//! The default CROWN ([`Method::crown`]) takes intermediate bounds by back-substitution
//! only where their cost (neurons x multiply-adds back to the input) is within
//! [`DEFAULT_CROWN_BUDGET`]: on `Mlp` and small networks that is every layer; on
//! `GapCnn` (25,088 neurons after conv1) every layer falls back to IBP, which makes it
//! CROWN-IBP there; dense back-substitution of every conv neuron would cost hundreds of
//! GFLOP per radius.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use certify::{certified_radius, margin_bounds, Method, Network, Norm, RadiusSearch};
//! use models::{init_model, Mlp};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (model, _) = init_model::<Mlp>(0, DType::F32, &Device::Cpu)?;
//! let net = Network::from_model(&model)?;
//! let image = Tensor::full(0.5f32, (1, 28, 28), &Device::Cpu)?;
//! let class = net.forward(&image.unsqueeze(0)?)?.argmax(1)?.to_vec1::<u32>()?[0] as usize;
//!
//! let b = margin_bounds(&net, &image, class, Norm::Linf, 0.001, Method::crown())?;
//! assert_eq!(b.margins.len(), 9);
//! let ibp = margin_bounds(&net, &image, class, Norm::Linf, 0.001, Method::Ibp)?;
//! assert!(b.min() >= ibp.min()); // CROWN is never looser than IBP
//!
//! let search = RadiusSearch::default_for(Norm::L2, net.input_len());
//! let r = certified_radius(&net, &image, class, Norm::L2, Method::crown(), search)?;
//! assert!(r.radius >= 0.0 && r.radius <= search.upper);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod bounds;
mod crown;
mod error;
mod ibp;
mod network;
mod region;
#[cfg(test)]
mod soundness;

pub use bounds::{
    certified_radii, certified_radius, images_per_batch, layer_intervals, margin_bounds,
    margin_bounds_batch, verified_accuracy, CertifiedRadius, Intermediate, Margin, MarginBounds,
    Method, RadiusSearch, DEFAULT_BATCH_BYTES, DEFAULT_CROWN_BUDGET,
};
pub use error::{CertifyError, Result};
pub use ibp::Interval;
pub use models::{Layer, LayerSequence};
pub use network::Network;
pub use region::{Norm, Region};
