//! What one map looks like after its scaling convention was applied: informative,
//! constant, or without positive evidence. The conventions themselves are in
//! `scaling`, which reports a status per map.

use std::fmt;

/// What one map looks like after its convention was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapStatus {
    /// Values vary over the map: the map says where the evidence is.
    Informative,
    /// Every value is equal (after ReLU, where the convention has one); min-max returns
    /// zeros for it.
    Constant,
    /// A ReLU convention found no positive value: the map is all zeros because nothing
    /// in the features speaks for the class.
    NoPositiveEvidence,
}

impl fmt::Display for MapStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapStatus::Informative => "informative",
            MapStatus::Constant => "constant (every value equal)",
            MapStatus::NoPositiveEvidence => "no positive value (all zero after ReLU)",
        })
    }
}
