//! PROXY protocol headers as HAProxy writes them (`send-proxy`,
//! `send-proxy-v2`), built with the `ppp` crate, an implementation
//! independent of the server's own parser.

use std::net::SocketAddr;

/// A PROXY protocol v1 header (`PROXY TCP4|TCP6 ...\r\n`) for a connection
/// from `source` to `destination`, as HAProxy's `send-proxy` writes it.
pub fn proxy_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    ppp::v1::Addresses::from((source, destination))
        .to_string()
        .into_bytes()
}

/// A PROXY protocol v2 `PROXY` header over TCP for a connection from
/// `source` to `destination`, as HAProxy's `send-proxy-v2` writes it.
pub fn proxy_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (source, destination),
    )
    .build()
    .expect("a v2 header with two addresses fits")
}

/// A PROXY protocol v2 `LOCAL` header (what a proxy sends for its own
/// health checks): no client address, the socket peer stands.
pub fn proxy_v2_local() -> Vec<u8> {
    use ppp::v2::{Builder, Command, Version};
    Builder::new(Version::Two | Command::Local, 0)
        .build()
        .expect("an empty v2 header fits")
}
