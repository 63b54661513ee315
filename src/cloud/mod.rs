//! Cloud-vendor plumbing shared by the scanners of one vendor (signing, credentials, RPC clients).

pub mod alibaba;
pub(crate) mod huawei;
pub(crate) mod query;
