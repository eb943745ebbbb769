//! PROXY protocol (placeholder until the parser lands).

use std::net::{IpAddr, SocketAddr};

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Bytes consumed.
    pub len: usize,
    /// The client, or `None` to keep the socket peer.
    pub source: Option<SocketAddr>,
}

/// Why a header was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The connection closed mid-header.
    #[error("connection closed before the PROXY header was complete")]
    Truncated,
    /// Not a header.
    #[error("not a PROXY protocol header")]
    NotAHeader,
}

/// Parses a header from the start of `buf`.
///
/// # Errors
///
/// Not a header.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    Err(ProxyError::NotAHeader)
}

/// Trusted proxies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustedProxies(Vec<IpAddr>);

impl TrustedProxies {
    /// Whether `ip` is trusted.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl std::str::FromStr for TrustedProxies {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let _ = text;
        Ok(TrustedProxies(vec![IpAddr::from([127, 0, 0, 1])]))
    }
}
