//! Huawei Cloud: the SDK-HMAC-SHA256 signer, IAM tokens, error responses.

pub(crate) mod auth;
pub(crate) mod error;
pub(crate) mod iam;
pub(crate) mod signer;
