//! Cloud provider plumbing shared by the scanners of one vendor (signing, auth).

pub mod huawei;
