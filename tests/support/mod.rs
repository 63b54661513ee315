//! Test peers shared by the integration tests; each test file takes what it needs.
pub mod apiserver;
