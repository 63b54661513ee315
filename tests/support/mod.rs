//! Helpers shared by the integration tests. Each test file uses only some of them.
#![allow(dead_code)]

pub mod apiserver;
pub mod cli;
pub mod container;
pub mod dry_run_apiserver;
pub mod helm;
pub mod pod;
pub mod registry;
pub mod webhook;
