//! The bottom layer: the words every other module speaks (severities, counts, scan
//! summaries, policy modes and rules, limit keys, digest keys, quoting request data).
//! Plain values and pure functions; nothing here imports another module of the crate.

pub(crate) mod accepted;
pub mod annotations;
pub(crate) mod digest_key;
pub mod limits;
pub mod rules;
pub mod scan_error;
pub mod summary;
pub(crate) mod text;
