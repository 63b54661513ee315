//! Cloud-vendor plumbing shared by the scanners of one vendor (signing, credentials, RPC clients).

pub mod alibaba;
pub mod huawei;
pub mod query;
