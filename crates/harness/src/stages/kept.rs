//! Successful adversarial examples kept by the attack stages for the explanation league
//! (the `league` stage explains them after the attacks ran, also when the attack stages
//! are loaded from the stage cache), with what f1 decided on each side.

use serde::{Deserialize, Serialize};

/// One successful example: the clean test image is `index` in the test split; the
/// adversarial image (and, for Type I, the SVAE's reconstruction of the clean image) is
/// kept pixel for pixel (f32 round-trips exactly through JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptExample {
    /// The example's identity for seeded draws (Type II: the test index; Type I: the
    /// pair's position in the constrained attack's pairs).
    pub id: usize,
    /// Test index of the clean image.
    pub index: usize,
    /// f1's class on the clean image (Type I: the class f1 keeps).
    pub clean_class: u32,
    /// f1's class on the adversarial image (Type I: the kept class again).
    pub adversarial_class: u32,
    /// Type I: the class the image was moved to (the panel's consensus); Type II: none.
    pub target: Option<u32>,
    /// The adversarial image, 28 x 28 grey in [0, 1], row-major.
    pub adversarial: Vec<f32>,
    /// Type I: G(mu(x)), the SVAE's reconstruction of the clean image; Type II: empty.
    pub reconstruction: Vec<f32>,
}
