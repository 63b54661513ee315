//! Cloud-vendor plumbing shared by the scanners (signing, credentials, RPC clients).

pub mod alibaba;
