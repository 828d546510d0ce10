//! Type I attacks (Tang et al., "Adversarial Attack Type I: Cheat Classifiers by
//! Significant Changes", TPAMI 2019): the latent code z of a supervised VAE is optimised
//! so that the decoded image G(z) becomes another digit for an independent oracle while
//! the attacked classifier f1 keeps its label. Gradients of f1 flow through the decoder
//! to z. Batched: every (image, target) pair has its own adaptive k and its own early
//! stop; a trajectory (J1, J2, l_dis, k, f1's probabilities, the oracle's verdict and
//! decoded frames) is recorded for the transition strips.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use models::{init_model, GapCnn, Oracle, Svae};
//! use vae_attack::{type_one_attack, LatentAttackConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = Device::Cpu;
//! let (svae, _) = init_model::<Svae>(0, DType::F32, &dev)?;
//! let (f1, _) = init_model::<GapCnn>(1, DType::F32, &dev)?;
//! let (oracle, _) = init_model::<Oracle>(2, DType::F32, &dev)?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &dev)?;
//! let config = LatentAttackConfig { max_iters: 3, ..LatentAttackConfig::type_one() };
//! let out = type_one_attack(&svae, &f1, &oracle, &x, &[7, 7], &[9, 0], None, &config)?;
//! assert_eq!(out.success.len(), 2);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod attack;
mod config;
mod error;
mod loss;
mod means;
mod verdict;

pub use attack::{
    class_transition, type_one_attack, type_one_attack_judge_free, Frame, LatentOutcome,
    Trajectory, TrajectoryPoint,
};
pub use config::{AdaptiveK, Constraint, LatentAttackConfig, Objective, Start, Stop};
pub use error::{AttackError, Result};
pub use loss::{latent_objective, logit_margin, next_k, per_example_cross_entropy, LossTerms};
pub use means::ClassMeans;
pub use verdict::{attack_then_judge, Judges, PairVerdict, Verdicts};
