//! Type II adversarial attacks (FGSM, PGD Linf/L2, CW-L2, DeepFool) over any Classifier.
//!
//! This crate is filled by its own issue; until then it exports nothing.
