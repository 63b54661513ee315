//! vulngate: a Kubernetes validating admission webhook that denies images whose
//! vulnerability scan summaries exceed the limits set on their namespace.

pub mod admission;
pub mod app;
pub mod audit;
pub mod background_audit;
pub mod cloud;
pub mod config;
pub mod connections;
pub mod crypto;
pub mod decision;
pub mod domain;
pub mod engine;
pub(crate) mod events;
pub(crate) mod httputil;
pub mod image;
pub(crate) mod json_text;
pub mod kube_client;
pub(crate) mod log_format;
pub mod log_writer;
pub mod metrics;
pub mod namespaces;
pub mod pattern;
pub mod pin;
pub mod policy;
pub mod precheck;
pub mod progress;
pub mod purge;
pub mod registry;
pub mod resolve;
pub mod scan;
pub mod secret;
pub mod server;
pub mod shared_cache;
pub(crate) mod thread_cache;
pub mod tls;

/// The hasher of the maps every review reads (cached summaries, parsed references,
/// policies, namespaces). Keyed at random per process like std's SipHash, so request
/// data cannot be chosen to collide, and several times cheaper for short keys.
pub(crate) type FastHashState = ahash::RandomState;
