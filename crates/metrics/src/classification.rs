//! Classification metrics: binary and multi-class confusion matrices, TPR / FPR /
//! precision / accuracy, operating points, and the ROC curve with its AUC.

mod confusion;
mod roc;

pub use confusion::{
    operating_point_at_threshold, operating_point_of_predictions, BinaryConfusion, ConfusionMatrix,
    OperatingPoint,
};
pub use roc::{auc, roc_curve, RocCurve};
