//! Huawei Cloud: the SDK-HMAC-SHA256 signer, IAM tokens, error responses.

pub mod auth;
pub mod error;
pub mod iam;
pub mod signer;
