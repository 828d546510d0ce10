//! Progress of long stages: the one progress abstraction of the workspace
//! ([`common::progress`]), re-exported so the harness's users need not name `common`.

pub use common::progress::{Progress, Silent};
