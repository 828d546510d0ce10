//! Class activation maps and Grad-CAM with named conventions, upsampling and PNG overlays.
//!
//! This crate is filled by its own issue; until then it exports nothing.
