//! Type II adversarial attacks over any [`models::Classifier`]: small changes of the
//! input that change the class. [`Fgsm`], [`PgdLinf`] and [`PgdL2`] (Madry et al.),
//! [`CarliniWagnerL2`] (with the authors' binary search over `c`) and [`DeepFool`].
//!
//! The shape follows torchattacks and Foolbox: one attack a file behind one trait,
//! [`Attack`]; a batch in, an [`AttackOutcome`] out (adversarial images, per-example
//! success, L0/L2/Linf norms, logits before and after, gradient evaluations, and a flag
//! where a gradient was zero or not finite, which is how gradient masking shows up).
//! Configurations are plain structs whose `Default`s are the literature's settings;
//! [`Targeting`] says what counts as a success. Bad input (pixels outside [0, 1], a
//! label count that does not fit the batch, `eps < 0`) is an [`AttackError`]. Random
//! starts draw from an explicit seed. Shared pieces are public: [`input_gradient`],
//! [`project_linf`], [`project_l2`], [`clamp_unit`].
//!
//! ```
//! use attacks::{Attack, PgdLinf, Targeting};
//! use candle_core::{DType, Device};
//! use models::{init_model, random::uniform, Classifier, Mlp};
//! use rand::{rngs::StdRng, SeedableRng};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = Device::Cpu;
//! let (model, _) = init_model::<Mlp>(0, DType::F32, &dev)?;
//! let images = uniform(&mut StdRng::seed_from_u64(1), (4, 1, 28, 28), 0.0, 1.0, DType::F32, &dev)?;
//! let labels = model.predict(&images)?; // attack the model's own answers
//!
//! let outcome = PgdLinf::madry_mnist().run(&model, &images, &labels, &Targeting::Untargeted)?;
//! assert_eq!(outcome.adversarial.dims(), images.dims());
//! assert!(outcome.linf.iter().all(|&d| d <= 0.3 + 1e-6));
//! assert_eq!(outcome.success_rate(), 1.0); // an untrained model is easy to fool
//! assert!(outcome.robust_accuracy() < 1.0);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod attack;
mod batch;
mod cw;
mod deepfool;
mod error;
mod fgsm;
mod gradient;
mod ops;
mod outcome;
mod pgd;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod test_support;

pub use attack::Attack;
pub use batch::Targeting;
pub use cw::CarliniWagnerL2;
pub use deepfool::DeepFool;
pub use error::{AttackError, Result};
pub use fgsm::Fgsm;
pub use gradient::{
    cross_entropy_per_example, degenerate_rows, input_gradient, logit_gradients,
    margin_per_example, InputGradient,
};
pub use ops::{clamp_unit, per_example, per_example_l2, project_l2, project_linf};
pub use outcome::{AttackOutcome, MeanNorms, L0_TOLERANCE};
pub use pgd::{PgdConfig, PgdL2, PgdLinf};
