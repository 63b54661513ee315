//! Why the servers could not start.

use std::net::SocketAddr;

use crate::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The bound socket has no address to announce.
    #[error("{0}")]
    LocalAddr(std::io::Error),
}
