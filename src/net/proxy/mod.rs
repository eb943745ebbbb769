//! The PROXY protocol (HAProxy's `send-proxy` / `send-proxy-v2`, nginx's
//! `proxy_protocol on`): framing the header a load balancer puts in front of
//! a connection, and deciding whose headers to believe.
//!
//! What it does today:
//!
//! * [`parse_header`] is a pure function over the bytes buffered so far. It
//!   answers `Ok(None)` ("read more") only while those bytes are still a
//!   valid beginning of a header; anything that can no longer become one is
//!   an error at once, so a client sending `17\n` to a proxy-protocol server
//!   is turned away on its first byte, not at the deadline. A complete
//!   header gives [`Header::len`] (the bytes to consume before the line) and
//!   the client address it carries ([`Header::source`]).
//! * [`TrustedProxies`] is the `--trusted-proxies` list (CIDRs, via
//!   `ipnet`): a header is honoured only from a peer it contains.
//!
//! Nothing here reads a socket: the connection path feeds the bytes it has
//! buffered under its own deadline and applies the result.
//!
//! # Decisions
//!
//! * **Hand-written, not `ppp`.** The `ppp` crate (2.3) was checked first
//!   (it is a dev-dependency: the tests below use it as an oracle on every
//!   header it accepts). It does not fit as the parser: its v1 parser takes
//!   `+80` as a port (`u16::from_str` accepts a sign), answers "incomplete"
//!   forever for `PROXY UNKNOWN\r\r\n` (it cuts the input at the first CR
//!   and then waits for an LF that can never arrive in its window), and
//!   keeps waiting on garbage such as `PROXY TCP4 zzz` instead of rejecting
//!   it; its v2 parser has no bound below 64 KiB and reports a bad version
//!   byte as a v1 "invalid prefix". Wrapping it would have meant
//!   re-validating every field around it, so the parser is written here,
//!   small and strict, with a unit test per field and rejection and a fuzz
//!   target (`fuzz/fuzz_targets/proxy_header.rs`).
//! * **v1** is exactly the spec's grammar: `PROXY`, single spaces, `TCP4`,
//!   `TCP6` or `UNKNOWN`, addresses of the announced family (IPv4 in dotted
//!   decimal without leading zeros, IPv6 as `std` parses it), ports
//!   `0`..=`65535` in decimal without sign or leading zero, then CRLF, at
//!   most [`V1_MAX_LEN`] bytes in all. After `UNKNOWN` the rest of the line
//!   is ignored, as the spec says, but it must still be printable ASCII (a
//!   lone CR or LF is never a line end).
//! * **v2**: the signature, version 2 only, commands `LOCAL` and `PROXY`.
//!   `LOCAL` (health checks) keeps the socket peer whatever family it
//!   names: the spec says its address block is ignored. `PROXY` over
//!   TCP/IPv4 (`0x11`) and TCP/IPv6 (`0x21`) carries the client address.
//!   `PROXY` with `UNSPEC` (`0x00`) or UNIX stream (`0x31`) keeps the
//!   socket peer: the spec tells a receiver to fall back to the real
//!   endpoints for valid combinations it does not use, and neither names an
//!   IP client we could write down. Datagram transports (`0x12`, `0x22`,
//!   `0x32`) are rejected (the spec allows either): a stream service cannot
//!   be relaying datagrams, so such a header means a misconfigured proxy.
//!   Any other family byte is invalid and rejected, as the spec demands.
//! * **v2 size**: at most [`V2_MAX_LEN`] bytes (16 + 2048). The largest
//!   address block is 216 bytes (UNIX); the TLVs HAProxy may add in `mode
//!   tcp` (ALPN, authority, unique-id of at most 128 bytes, CRC32c, NETNS,
//!   the SSL block) stay well under 2 KiB, and the whole header still fits
//!   one 4 KiB read. A longer header is rejected as soon as its length field
//!   arrives.
//! * **TLVs** are skipped, not interpreted (the spec allows it), but for a
//!   `PROXY` header with an address family their framing is checked: each
//!   must fit in the header, and the header must end on a TLV boundary. The
//!   CRC32c TLV is not verified (a receiver that does not support it need
//!   not); this server gains nothing from it over TCP's own checksum.
//! * **Addresses are kept as sent**: an IPv4-mapped IPv6 source
//!   (`::ffff:192.0.2.1`) stays IPv6, like a socket peer on a dual-stack
//!   listener. [`TrustedProxies`] matches mapped peers against IPv4 CIDRs.
//! * **Errors never quote client bytes**, so a [`ProxyError`] can go into a
//!   `warn` record as it is; a caller wanting the offending bytes in the
//!   record escapes them with [`escape_bytes`](crate::escape::escape_bytes).

use std::fmt;
use std::net::SocketAddr;
use thiserror::Error;

/// Longest v1 header, CRLF included, as the spec fixes it
/// (`PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;
/// Longest v2 header we accept: the 16 fixed bytes and up to 2048 bytes of
/// addresses and TLVs (see the module docs for why this bound).
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + 2048;
/// The bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Signature, version/command, family/transport, and the 2-byte length.
const V2_FIXED_LEN: usize = 16;

/// A complete PROXY header at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// How many bytes the header takes: the line starts right after them.
    pub len: usize,
    /// The client address the proxy reports; `None` for v2 `LOCAL`, v1
    /// `UNKNOWN` and the v2 families that keep the socket peer, so the
    /// caller uses the socket peer instead.
    pub source: Option<SocketAddr>,
    /// Which version of the protocol the header used, for logs and metrics.
    pub version: Version,
}

impl Header {
    /// The address to use for this connection everywhere (audit, logs,
    /// limits): the header's source, or `socket_peer` when it has none.
    pub fn client(&self, socket_peer: SocketAddr) -> SocketAddr {
        self.source.unwrap_or(socket_peer)
    }
}

/// The two versions of the PROXY protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text header (`PROXY TCP4 ...\r\n`), HAProxy's `send-proxy`.
    V1,
    /// The binary header, HAProxy's `send-proxy-v2`.
    V2,
}

/// A field of a v1 header, named in [`ProxyError::V1Field`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Field {
    /// `TCP4`, `TCP6` or `UNKNOWN`.
    Protocol,
    /// The client's address.
    SourceAddress,
    /// The address the client connected to.
    DestinationAddress,
    /// The client's port.
    SourcePort,
    /// The port the client connected to.
    DestinationPort,
}

impl fmt::Display for V1Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            V1Field::Protocol => "protocol",
            V1Field::SourceAddress => "source address",
            V1Field::DestinationAddress => "destination address",
            V1Field::SourcePort => "source port",
            V1Field::DestinationPort => "destination port",
        })
    }
}

/// Why a connection's first bytes are not an acceptable PROXY header.
/// Every variant ends the connection without a reply; the messages are
/// short, fixed text (never client bytes) for a `warn` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProxyError {
    /// The peer is not in `--trusted-proxies`, so its header (if any) must
    /// not be believed. Not produced by [`parse_header`]; here so that the
    /// connection path has one error type for every reason to turn a
    /// connection away.
    #[error("connection from an address not in --trusted-proxies")]
    Untrusted,
    /// The bytes start like neither `PROXY ` nor the v2 signature: the
    /// client did not send a header at all.
    #[error("no PROXY protocol header")]
    NotHeader,
    /// A v1 header with no CRLF within [`V1_MAX_LEN`] bytes.
    #[error("PROXY v1 header longer than 107 bytes")]
    V1TooLong,
    /// A v1 header whose layout is wrong: a double space, a missing or
    /// extra field, a bare CR or LF, a non-printable byte.
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    /// A v1 field that is not valid for its place: an unknown protocol, an
    /// address of the wrong family, a port with a sign or leading zero.
    #[error("PROXY v1 header has a bad {0}")]
    V1Field(V1Field),
    /// A v2 header of a version other than 2 (the high nibble of byte 13).
    #[error("unsupported PROXY protocol version {0} in a binary header")]
    V2Version(u8),
    /// A v2 command other than `LOCAL` (0) or `PROXY` (1).
    #[error("unsupported PROXY v2 command {0:#x}")]
    V2Command(u8),
    /// A v2 family/transport byte that is invalid, or a datagram transport
    /// a stream service cannot be relaying.
    #[error("unsupported PROXY v2 address family and transport {0:#04x}")]
    V2Family(u8),
    /// A v2 header whose length field makes it longer than [`V2_MAX_LEN`].
    #[error("PROXY v2 header of {0} bytes is over the 2064-byte limit")]
    V2TooLong(usize),
    /// A v2 header too short for the addresses of its family.
    #[error("PROXY v2 address block of {got} bytes, {need} needed")]
    V2Addresses {
        /// The block length the header announces.
        got: usize,
        /// What the announced family needs.
        need: usize,
    },
    /// A v2 TLV that runs past the end of the header.
    #[error("PROXY v2 header has a TLV overrunning the header")]
    V2Tlv,
    /// The connection closed, or the request timeout passed, before the
    /// header was complete. Not produced by [`parse_header`] (it cannot
    /// know); the connection path reports it.
    #[error("PROXY header not complete before the connection closed or timed out")]
    Incomplete,
}

impl ProxyError {
    /// A stable one-word label for counters and metrics, one per variant.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::Untrusted => "untrusted",
            ProxyError::NotHeader => "not_header",
            ProxyError::V1TooLong => "v1_too_long",
            ProxyError::V1Malformed(_) => "v1_malformed",
            ProxyError::V1Field(_) => "v1_field",
            ProxyError::V2Version(_) => "v2_version",
            ProxyError::V2Command(_) => "v2_command",
            ProxyError::V2Family(_) => "v2_family",
            ProxyError::V2TooLong(_) => "v2_too_long",
            ProxyError::V2Addresses { .. } => "v2_addresses",
            ProxyError::V2Tlv => "v2_tlv",
            ProxyError::Incomplete => "incomplete",
        }
    }
}

/// Reads a PROXY header (v1 or v2) from the bytes a connection has sent so
/// far.
///
/// * `Ok(Some(header))`: a complete, valid header; the line starts at
///   `buf[header.len..]`.
/// * `Ok(None)`: `buf` is a valid beginning of a header (the empty buffer
///   included); read more, under the same deadline as the line.
/// * `Err(_)`: `buf` can never become a valid header, whatever follows.
///
/// # Errors
///
/// A [`ProxyError`] naming the first thing wrong.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    match buf.first() {
        None => Ok(None),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyError::NotHeader),
    }
}

/// Whether `buf` agrees with `expected` on every byte both have.
fn agrees(buf: &[u8], expected: &[u8]) -> bool {
    let n = buf.len().min(expected.len());
    buf[..n] == expected[..n]
}

mod trust;
mod v1;
mod v2;

pub use trust::{TrustError, TrustedProxies};
use v1::parse_v1;
use v2::parse_v2;

#[cfg(test)]
mod tests {
    use super::*;
    use v2::CMD_PROXY;

    /// Decodes the hex of captured bytes.
    pub(super) fn hex(text: &str) -> Vec<u8> {
        let text: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        text.chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    pub(super) fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    pub(super) fn header(len: usize, source: Option<&str>, version: Version) -> Header {
        Header {
            len,
            source: source.map(addr),
            version,
        }
    }

    /// Feeds every prefix of `bytes` (the header, then `tail`): each shorter
    /// than the header is `Ok(None)`, and from the full header on the answer
    /// is `expected`.
    pub(super) fn assert_incremental(bytes: &[u8], expected: Header) {
        for cut in 0..expected.len {
            assert_eq!(
                parse_header(&bytes[..cut]),
                Ok(None),
                "prefix of {cut} bytes of {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        for cut in expected.len..=bytes.len() {
            assert_eq!(parse_header(&bytes[..cut]), Ok(Some(expected)), "cut {cut}");
        }
    }

    /// Builds a v2 header: command, family byte, payload.
    pub(super) fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    // ---- captured from HAProxy 2.6.12 (send-proxy / send-proxy-v2) ----
    // Each is what HAProxy wrote to a listener on 127.0.0.1, client line
    // `17\n` included.

    /// `send-proxy`, IPv4 client.
    const HAPROXY_V1_TCP4: &str = "50524f58592054435034203132372e302e302e31203132372e302e302e31\
         2035333030362035333439310d0a31370a";
    /// `send-proxy`, IPv6 client on `[::1]`.
    const HAPROXY_V1_TCP6: &str =
        "50524f58592054435036203a3a31203a3a312034393233302035333439310d0a31370a";
    /// `send-proxy-v2`, IPv4 client, no TLVs.
    const HAPROXY_V2_TCP4: &str = "0d0a0d0a000d0a515549540a2111000c7f0000017f000001d736cb4531370a";
    /// `send-proxy-v2`, IPv6 client on `[::1]`.
    const HAPROXY_V2_TCP6: &str = "0d0a0d0a000d0a515549540a21210024\
         00000000000000000000000000000001 00000000000000000000000000000001\
         cb10cb45 31370a";
    /// `send-proxy-v2` with `proxy-v2-options unique-id,crc32c,authority,ssl`:
    /// TLVs CRC32c (0x03), unique-id (0x05, 46 bytes), SSL (0x20, no TLS).
    const HAPROXY_V2_TLVS: &str = "0d0a0d0a000d0a515549540a2111004c7f0000017f000001a552aa83\
         030004682c2e75 05002e37463030303030313a413535325f37463030303030313a414138335f\
         36423042413539325f303030323a31303236 200005000000000031370a";
    /// The health check of a `check-send-proxy` server with `send-proxy-v2`:
    /// LOCAL, UNSPEC, no addresses.
    const HAPROXY_V2_CHECK: &str = "0d0a0d0a000d0a515549540a20000000";

    #[test]
    fn haproxy_v1_headers() {
        let bytes = hex(HAPROXY_V1_TCP4);
        let expected = header(44, Some("127.0.0.1:53006"), Version::V1);
        assert_incremental(&bytes, expected);
        assert_eq!(&bytes[expected.len..], b"17\n");

        let bytes = hex(HAPROXY_V1_TCP6);
        let expected = header(32, Some("[::1]:49230"), Version::V1);
        assert_incremental(&bytes, expected);
        assert_eq!(&bytes[expected.len..], b"17\n");
    }

    #[test]
    fn haproxy_v2_headers() {
        let cases = [
            (HAPROXY_V2_TCP4, 28, Some("127.0.0.1:55094")),
            (HAPROXY_V2_TCP6, 52, Some("[::1]:51984")),
            (HAPROXY_V2_TLVS, 92, Some("127.0.0.1:42322")),
            (HAPROXY_V2_CHECK, 16, None),
        ];
        for (text, len, source) in cases {
            let bytes = hex(text);
            let expected = header(len, source, Version::V2);
            assert_incremental(&bytes, expected);
            let tail = &bytes[len..];
            assert!(tail.is_empty() || tail == b"17\n", "{text}");
        }
    }

    #[test]
    fn client_is_the_source_or_the_socket_peer() {
        let peer = addr("127.0.0.1:9");
        let proxied = header(10, Some("192.0.2.7:4000"), Version::V1);
        assert_eq!(proxied.client(peer), addr("192.0.2.7:4000"));
        let local = header(16, None, Version::V2);
        assert_eq!(local.client(peer), peer);
    }

    #[test]
    fn errors_are_final() {
        // Walking every prefix: once an error shows, every longer prefix
        // shows the same one, so the connection can be closed at once.
        let mut long_unknown = b"PROXY UNKNOWN ".to_vec();
        long_unknown.resize(60, b'a');
        long_unknown.push(0x01);
        long_unknown.resize(V1_MAX_LEN - 1, b'a');
        long_unknown.extend_from_slice(b"\r\n17\n");
        let rejected: [&[u8]; 8] = [
            b"17\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 + 1 2\r\n17\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 + 3\r\n",
            b"PROXY UNKNOWN\r\r\n17\n",
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x12\x00\x0c",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff\x00",
            &long_unknown,
        ];
        for bytes in rejected {
            let mut seen = None;
            for cut in 0..=bytes.len() {
                match (parse_header(&bytes[..cut]), seen) {
                    (Err(e), None) => seen = Some(e),
                    (Err(e), Some(first)) => assert_eq!(e, first, "{bytes:?} cut {cut}"),
                    (Ok(found), Some(first)) => {
                        panic!("{bytes:?} cut {cut}: {found:?} after {first:?}")
                    }
                    (Ok(_), None) => {}
                }
            }
            assert!(seen.is_some(), "{bytes:?} was never rejected");
        }
    }

    #[test]
    fn labels_are_distinct() {
        let all = [
            ProxyError::Untrusted,
            ProxyError::NotHeader,
            ProxyError::V1TooLong,
            ProxyError::V1Malformed("x"),
            ProxyError::V1Field(V1Field::Protocol),
            ProxyError::V2Version(1),
            ProxyError::V2Command(2),
            ProxyError::V2Family(3),
            ProxyError::V2TooLong(4),
            ProxyError::V2Addresses { got: 1, need: 2 },
            ProxyError::V2Tlv,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(ProxyError::label).collect();
        assert_eq!(labels.len(), all.len());
    }

    // ---- ppp as an oracle ----

    /// Where `ppp` accepts a header, we agree on its length and source.
    /// (Where it does not, or where we are stricter, the tests above say
    /// which answer is right.)
    fn assert_agrees_with_ppp(bytes: &[u8]) {
        let ours = parse_header(bytes).unwrap().unwrap();
        match ppp::HeaderResult::parse(bytes) {
            ppp::HeaderResult::V1(Ok(h)) => {
                assert_eq!(ours.len, h.header.len());
                let source = match h.addresses {
                    ppp::v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::new(a.source_address.into(), a.source_port))
                    }
                    ppp::v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::new(a.source_address.into(), a.source_port))
                    }
                    ppp::v1::Addresses::Unknown => None,
                };
                assert_eq!(ours.source, source);
            }
            ppp::HeaderResult::V2(Ok(h)) => {
                assert_eq!(ours.len, h.len());
                let source = match (h.command, h.addresses) {
                    (ppp::v2::Command::Local, _) => None,
                    (_, ppp::v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::new(a.source_address.into(), a.source_port))
                    }
                    (_, ppp::v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::new(a.source_address.into(), a.source_port))
                    }
                    _ => None,
                };
                assert_eq!(ours.source, source);
            }
            other => panic!("ppp rejects what we accept: {other:?}"),
        }
    }

    #[test]
    fn agrees_with_ppp_on_valid_headers() {
        for text in [
            HAPROXY_V1_TCP4,
            HAPROXY_V1_TCP6,
            HAPROXY_V2_TCP4,
            HAPROXY_V2_TCP6,
            HAPROXY_V2_TLVS,
            HAPROXY_V2_CHECK,
        ] {
            assert_agrees_with_ppp(&hex(text));
        }
        assert_agrees_with_ppp(b"PROXY UNKNOWN\r\n");
        assert_agrees_with_ppp(b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n");
        assert_agrees_with_ppp(&v2(CMD_PROXY, 0x00, &[1, 2, 3]));
    }

    #[test]
    fn ppp_findings_that_made_us_write_our_own() {
        use ppp::PartialResult;
        // A signed port: ppp accepts it, we do not.
        let signed = b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 443\r\n";
        assert!(ppp::HeaderResult::parse(signed).is_complete());
        assert!(matches!(
            ppp::HeaderResult::parse(signed),
            ppp::HeaderResult::V1(Ok(_))
        ));
        assert!(parse_header(signed).is_err());
        // A line that can never end: ppp waits for ever, we reject it.
        let stuck = b"PROXY UNKNOWN\r\r\n17\n";
        assert!(ppp::HeaderResult::parse(stuck).is_incomplete());
        assert!(parse_header(stuck).is_err());
        // Garbage in an address: ppp waits, we reject it.
        assert!(ppp::HeaderResult::parse(b"PROXY TCP4 zzz").is_incomplete());
        assert!(parse_header(b"PROXY TCP4 zzz").is_err());
    }
}
