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

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use thiserror::Error;

/// Longest v1 header, CRLF included, as the spec fixes it
/// (`PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;
/// Longest v2 header we accept: the 16 fixed bytes and up to 2048 bytes of
/// addresses and TLVs (see the module docs for why this bound).
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + 2048;
/// The bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// What every v1 header starts with, the separator included.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Signature, version/command, family/transport, and the 2-byte length.
const V2_FIXED_LEN: usize = 16;
/// Bytes of a TLV's type and length.
const TLV_HEAD_LEN: usize = 3;
/// Longest textual IPv6 address (with an embedded IPv4 tail).
const IPV6_TEXT_MAX: usize = 45;

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

// ---------------------------------------------------------------- v1 ----

/// Parses a v1 header from a buffer starting with `P`.
fn parse_v1(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    if !agrees(buf, V1_PREFIX) {
        return Err(ProxyError::NotHeader);
    }
    // Only the first V1_MAX_LEN bytes can belong to a header; looking no
    // further keeps the work per call bounded whatever was buffered.
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let body_start = V1_PREFIX.len().min(window.len());
    let end = window[body_start..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|i| body_start + i);
    match end {
        None => {
            check_v1_body(&window[body_start..], false)?;
            if buf.len() >= V1_MAX_LEN {
                Err(ProxyError::V1TooLong)
            } else {
                Ok(None)
            }
        }
        Some(i) if window[i] == b'\n' => {
            check_v1_body(&window[body_start..i], false)?;
            Err(ProxyError::V1Malformed("line ends with LF without CR"))
        }
        Some(i) => {
            let body = &window[body_start..i];
            if i + 2 > V1_MAX_LEN {
                check_v1_body(body, false)?;
                return Err(ProxyError::V1TooLong);
            }
            match buf.get(i + 1) {
                Some(b'\n') => {
                    let source = check_v1_body(body, true)?;
                    Ok(Some(Header {
                        len: i + 2,
                        source,
                        version: Version::V1,
                    }))
                }
                Some(_) => {
                    check_v1_body(body, false)?;
                    Err(ProxyError::V1Malformed("CR not followed by LF"))
                }
                None => {
                    check_v1_body(body, false)?;
                    Ok(None)
                }
            }
        }
    }
}

/// Checks the text between `PROXY ` and the CRLF. With `complete`, `body`
/// is all of it and must be a whole valid header body; otherwise it is what
/// has arrived so far and must be a valid beginning of one. Returns the
/// source address of a complete `TCP4`/`TCP6` header.
fn check_v1_body(body: &[u8], complete: bool) -> Result<Option<SocketAddr>, ProxyError> {
    let (protocol, rest) = match body.iter().position(|&b| b == b' ') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let protocol_done = complete || rest.is_some();
    let family = match protocol {
        b"TCP4" => Family::V4,
        b"TCP6" => Family::V6,
        b"UNKNOWN" => {
            // The spec: ignore anything before the CRLF. We still require
            // printable ASCII, so no byte here can end or fake a line.
            if let Some(rest) = rest {
                if !rest.iter().all(|b| (0x20..0x7f).contains(b)) {
                    return Err(ProxyError::V1Malformed("non-printable byte after UNKNOWN"));
                }
            }
            return Ok(None);
        }
        _ if protocol.is_empty() && protocol_done => {
            return Err(ProxyError::V1Malformed("empty field (double space?)"));
        }
        _ if !protocol_done
            && [&b"TCP4"[..], b"TCP6", b"UNKNOWN"]
                .iter()
                .any(|p| p.starts_with(protocol)) =>
        {
            return Ok(None);
        }
        _ => return Err(ProxyError::V1Field(V1Field::Protocol)),
    };
    let Some(rest) = rest else {
        // `TCP4` / `TCP6` and nothing after it.
        return if complete {
            Err(ProxyError::V1Malformed("missing addresses and ports"))
        } else {
            Ok(None)
        };
    };
    const FIELDS: [V1Field; 4] = [
        V1Field::SourceAddress,
        V1Field::DestinationAddress,
        V1Field::SourcePort,
        V1Field::DestinationPort,
    ];
    // Fields are checked in order before their count, so the error a
    // prefix shows is the error the whole line shows.
    let tokens: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
    let mut source_ip = None;
    let mut source_port = None;
    for (n, (token, field)) in tokens.iter().zip(FIELDS).enumerate() {
        // Every token but the last was followed by a space, so it is whole.
        let whole = complete || n + 1 < tokens.len();
        if whole && token.is_empty() {
            return Err(ProxyError::V1Malformed("empty field (double space?)"));
        }
        let ok = match field {
            V1Field::SourceAddress | V1Field::DestinationAddress if whole => {
                match family.parse(token) {
                    Some(ip) => {
                        if field == V1Field::SourceAddress {
                            source_ip = Some(ip);
                        }
                        true
                    }
                    None => false,
                }
            }
            V1Field::SourceAddress | V1Field::DestinationAddress => family.could_start(token),
            _ if whole => match parse_port(token) {
                Some(port) => {
                    if field == V1Field::SourcePort {
                        source_port = Some(port);
                    }
                    true
                }
                None => false,
            },
            _ => token.is_empty() || parse_port(token).is_some(),
        };
        if !ok {
            return Err(ProxyError::V1Field(field));
        }
    }
    if tokens.len() > FIELDS.len() {
        return Err(ProxyError::V1Malformed(
            "more than four fields after the protocol",
        ));
    }
    if complete && tokens.len() < FIELDS.len() {
        return Err(ProxyError::V1Malformed(
            "fewer than four fields after the protocol",
        ));
    }
    Ok(match (complete, source_ip, source_port) {
        (true, Some(ip), Some(port)) => Some(SocketAddr::new(ip, port)),
        _ => None,
    })
}

/// The address family a v1 `TCP4`/`TCP6` header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `TCP4`: dotted-decimal IPv4.
    V4,
    /// `TCP6`: textual IPv6.
    V6,
}

impl Family {
    /// Parses a whole address of this family, strictly.
    fn parse(self, token: &[u8]) -> Option<IpAddr> {
        let text = std::str::from_utf8(token).ok()?;
        match self {
            // std's parser is the spec's grammar: four decimal octets,
            // single dots, no leading zeros, nothing else.
            Family::V4 => Ipv4Addr::from_str(text).ok().map(IpAddr::V4),
            Family::V6 => Ipv6Addr::from_str(text).ok().map(IpAddr::V6),
        }
    }

    /// Whether `token` can still grow into an address of this family.
    /// Exact for IPv4; for IPv6 a cheap over-approximation (alphabet,
    /// length, group sizes, one `::`), since the whole token is checked by
    /// [`Family::parse`] once its space or CR arrives.
    fn could_start(self, token: &[u8]) -> bool {
        match self {
            Family::V4 => {
                let groups: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
                let last = groups.len() - 1;
                groups.len() <= 4
                    && groups
                        .iter()
                        .enumerate()
                        .all(|(i, g)| (i == last && g.is_empty()) || is_decimal_at_most(g, 255))
            }
            Family::V6 => {
                token.len() <= IPV6_TEXT_MAX
                    && token
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
                    && !token.windows(3).any(|w| w == b":::")
                    && token.windows(2).filter(|w| *w == b"::").count() <= 1
                    && token
                        .split(|&b| b == b':')
                        .all(|g| g.len() <= 4 || g.contains(&b'.'))
            }
        }
    }
}

/// A port: decimal `0`..=`65535`, no sign, no leading zero.
fn parse_port(token: &[u8]) -> Option<u16> {
    if is_decimal_at_most(token, 65535) {
        // Checked above: 1-5 ASCII digits with a value that fits.
        std::str::from_utf8(token).ok()?.parse().ok()
    } else {
        None
    }
}

/// Whether `digits` is a decimal number without sign or leading zero
/// (`0` itself is fine) whose value is at most `max`.
fn is_decimal_at_most(digits: &[u8], max: u32) -> bool {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return false;
    }
    let value = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    value <= max
}

// ---------------------------------------------------------------- v2 ----

/// The v2 `LOCAL` command: a connection the proxy made itself.
const CMD_LOCAL: u8 = 0x0;
/// The v2 `PROXY` command: a relayed client connection.
const CMD_PROXY: u8 = 0x1;

/// Parses a v2 header from a buffer starting with CR.
fn parse_v2(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    if !agrees(buf, &V2_SIGNATURE) {
        return Err(ProxyError::NotHeader);
    }
    let Some(&version_command) = buf.get(12) else {
        return Ok(None);
    };
    let version = version_command >> 4;
    if version != 2 {
        return Err(ProxyError::V2Version(version));
    }
    let command = version_command & 0x0f;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(ProxyError::V2Command(command));
    }
    let Some(&family) = buf.get(13) else {
        return Ok(None);
    };
    // How many address bytes the family needs, and whether they name the
    // client; `None` when the header keeps the socket peer.
    let addresses: Option<usize> = if command == CMD_LOCAL {
        // The spec: a LOCAL header's protocol block, family included, is
        // ignored; the length field alone says how much to skip.
        None
    } else {
        match family {
            0x00 => None,
            0x11 => Some(12),
            0x21 => Some(36),
            0x31 => Some(216),
            _ => return Err(ProxyError::V2Family(family)),
        }
    };
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Ok(None);
    };
    let block = usize::from(u16::from_be_bytes([hi, lo]));
    let total = V2_FIXED_LEN + block;
    if total > V2_MAX_LEN {
        return Err(ProxyError::V2TooLong(total));
    }
    if let Some(need) = addresses {
        if block < need {
            return Err(ProxyError::V2Addresses { got: block, need });
        }
    }
    if buf.len() < total {
        return Ok(None);
    }
    let payload = &buf[V2_FIXED_LEN..total];
    let source = match addresses {
        None => None,
        Some(need) => {
            check_tlvs(&payload[need..])?;
            match family {
                // The block is at least `need` bytes long (checked above).
                0x11 => {
                    let ip = Ipv4Addr::new(payload[0], payload[1], payload[2], payload[3]);
                    let port = u16::from_be_bytes([payload[8], payload[9]]);
                    Some(SocketAddr::new(IpAddr::V4(ip), port))
                }
                0x21 => {
                    let mut ip = [0u8; 16];
                    ip.copy_from_slice(&payload[..16]);
                    let port = u16::from_be_bytes([payload[32], payload[33]]);
                    Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
                }
                // UNIX stream: the client is a path on the proxy's machine;
                // the socket peer (the proxy) is the honest address.
                _ => None,
            }
        }
    };
    Ok(Some(Header {
        len: total,
        source,
        version: Version::V2,
    }))
}

/// Checks that `tlvs` is a whole number of well-framed TLVs.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        if tlvs.len() < TLV_HEAD_LEN {
            return Err(ProxyError::V2Tlv);
        }
        let value_len = usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]]));
        let tlv_len = TLV_HEAD_LEN + value_len;
        if tlvs.len() < tlv_len {
            return Err(ProxyError::V2Tlv);
        }
        tlvs = &tlvs[tlv_len..];
    }
    Ok(())
}

// ------------------------------------------------------------ trust ----

/// The `--trusted-proxies` list: the peers whose PROXY headers are
/// believed. Every other peer is turned away, so a client can never choose
/// the address written in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    /// The networks, host bits cleared, in the order given.
    nets: Vec<IpNet>,
}

/// Why a `--trusted-proxies` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrustError {
    /// The list has no entries at all: no proxy could ever connect.
    #[error("the trusted proxy list is empty (give CIDRs such as 10.0.0.0/8,::1/128)")]
    Empty,
    /// An entry (between commas) is blank, as in `a,,b`.
    #[error("empty entry in the trusted proxy list")]
    EmptyEntry,
    /// An entry's address part is not an IPv4 or IPv6 address.
    #[error("'{0}' is not an IP address or CIDR (e.g. 10.0.0.0/8 or 2001:db8::/32)")]
    Address(String),
    /// An entry's prefix length is not a number or too long for its family.
    #[error("'{entry}': the prefix length must be 0-{max}")]
    Prefix {
        /// The entry as given.
        entry: String,
        /// The longest prefix its family allows (32 or 128).
        max: u8,
    },
}

impl TrustedProxies {
    /// Whether `peer` may send a PROXY header. An IPv4-mapped IPv6 peer
    /// (`::ffff:127.0.0.1`, as a dual-stack listener reports IPv4 clients)
    /// is the IPv4 host it maps, and matches IPv4 networks.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.nets.iter().any(|net| net.contains(&peer))
    }

    /// Returns `Ok(())` for a trusted peer, [`ProxyError::Untrusted`]
    /// otherwise, for a connection path that uses `?`.
    ///
    /// # Errors
    ///
    /// [`ProxyError::Untrusted`] when `peer` is not in the list.
    pub fn check(&self, peer: IpAddr) -> Result<(), ProxyError> {
        if self.contains(peer) {
            Ok(())
        } else {
            Err(ProxyError::Untrusted)
        }
    }

    /// The networks, host bits cleared.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

impl Default for TrustedProxies {
    /// `127.0.0.0/8,::1/128`: a proxy on the same machine.
    fn default() -> Self {
        TrustedProxies {
            nets: vec![
                IpNet::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8)
                    .unwrap_or_else(|_| unreachable!("8 fits IPv4")),
                IpNet::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128)
                    .unwrap_or_else(|_| unreachable!("128 fits IPv6")),
            ],
        }
    }
}

impl FromStr for TrustedProxies {
    type Err = TrustError;

    /// Parses `CIDR[,CIDR...]`; spaces around entries are ignored, a bare
    /// address means a single host (/32 or /128), host bits below the
    /// prefix are cleared (`10.1.2.3/8` is `10.0.0.0/8`), and a network of
    /// IPv4-mapped addresses is kept as the IPv4 network it maps
    /// (`::ffff:10.0.0.0/104` is `10.0.0.0/8`), since peers are compared in
    /// their IPv4 form.
    fn from_str(list: &str) -> Result<Self, TrustError> {
        if list.trim().is_empty() {
            return Err(TrustError::Empty);
        }
        let nets = list
            .split(',')
            .map(|entry| parse_net(entry.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets })
    }
}

impl fmt::Display for TrustedProxies {
    /// The list as `--trusted-proxies` takes it, for the start-up record.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// Parses one entry: `ADDR` or `ADDR/PREFIX`.
fn parse_net(entry: &str) -> Result<IpNet, TrustError> {
    if entry.is_empty() {
        return Err(TrustError::EmptyEntry);
    }
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let ip = IpAddr::from_str(addr).map_err(|_| TrustError::Address(entry.to_owned()))?;
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => max,
        // Digits only: u8::from_str would also take `+8`.
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u8>().map_err(|_| TrustError::Prefix {
                entry: entry.to_owned(),
                max,
            })?
        }
        Some(_) => {
            return Err(TrustError::Prefix {
                entry: entry.to_owned(),
                max,
            })
        }
    };
    let net = IpNet::new(ip, len).map_err(|_| TrustError::Prefix {
        entry: entry.to_owned(),
        max,
    })?;
    Ok(match net.trunc() {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
                .map(|n| n.trunc())
                .unwrap_or(IpNet::V6(v6)),
            None => IpNet::V6(v6),
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the hex of captured bytes.
    fn hex(text: &str) -> Vec<u8> {
        let text: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        text.chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn header(len: usize, source: Option<&str>, version: Version) -> Header {
        Header {
            len,
            source: source.map(addr),
            version,
        }
    }

    /// Feeds every prefix of `bytes` (the header, then `tail`): each shorter
    /// than the header is `Ok(None)`, and from the full header on the answer
    /// is `expected`.
    fn assert_incremental(bytes: &[u8], expected: Header) {
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
    fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
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

    // ---- v1: every field ----

    #[test]
    fn v1_tcp4_fields() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n17\n";
        assert_incremental(line, header(45, Some("192.0.2.1:56324"), Version::V1));
        // The spec's longest TCP4 line, and the port bounds.
        let line = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
        assert_incremental(line, header(56, Some("255.255.255.255:65535"), Version::V1));
        let line = b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n";
        assert_incremental(line, header(32, Some("0.0.0.0:0"), Version::V1));
    }

    #[test]
    fn v1_tcp6_fields() {
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\nx";
        assert_incremental(line, header(40, Some("[2001:db8::1]:1"), Version::V1));
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
        assert_eq!(line.len(), 104);
        assert_incremental(
            line.as_bytes(),
            header(104, Some(&format!("[{full}]:65535")), Version::V1),
        );
        // A mapped IPv4 source stays as sent.
        let line = b"PROXY TCP6 ::ffff:192.0.2.1 ::1 80 81\r\n";
        assert_incremental(line, header(39, Some("[::ffff:192.0.2.1]:80"), Version::V1));
    }

    #[test]
    fn v1_unknown_keeps_the_socket_peer() {
        assert_incremental(b"PROXY UNKNOWN\r\n17\n", header(15, None, Version::V1));
        let line = b"PROXY UNKNOWN ::1 ::1 1 2\r\n";
        assert_incremental(line, header(27, None, Version::V1));
        // The spec's worst case: exactly 107 bytes.
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
        assert_eq!(line.len(), V1_MAX_LEN);
        assert_incremental(line.as_bytes(), header(107, None, Version::V1));
    }

    // ---- v1: every rejection ----

    #[test]
    fn v1_not_a_header_is_rejected_on_the_first_wrong_byte() {
        assert_eq!(parse_header(b"1"), Err(ProxyError::NotHeader));
        assert_eq!(parse_header(b"17\n"), Err(ProxyError::NotHeader));
        assert_eq!(parse_header(b"PROXZ"), Err(ProxyError::NotHeader));
        assert_eq!(parse_header(b"proxy TCP4"), Err(ProxyError::NotHeader));
        assert_eq!(parse_header(b"PROXY\r\n"), Err(ProxyError::NotHeader));
        assert_eq!(parse_header(b"PROXY\t"), Err(ProxyError::NotHeader));
        assert_eq!(
            parse_header(b"GET / HTTP/1.1\r\n"),
            Err(ProxyError::NotHeader)
        );
        assert_eq!(parse_header(b"PRO"), Ok(None));
    }

    #[test]
    fn v1_bad_protocol() {
        let bad = ProxyError::V1Field(V1Field::Protocol);
        assert_eq!(parse_header(b"PROXY TCP5"), Err(bad));
        assert_eq!(parse_header(b"PROXY UDP4 "), Err(bad));
        assert_eq!(parse_header(b"PROXY tcp4"), Err(bad));
        assert_eq!(parse_header(b"PROXY TCP4x"), Err(bad));
        assert_eq!(parse_header(b"PROXY UNKNOWNX\r\n"), Err(bad));
        assert_eq!(parse_header(b"PROXY TC"), Ok(None));
        assert_eq!(parse_header(b"PROXY UNK"), Ok(None));
        assert_eq!(
            parse_header(b"PROXY \r\n"),
            Err(ProxyError::V1Malformed("empty field (double space?)"))
        );
        assert_eq!(
            parse_header(b"PROXY  TCP4"),
            Err(ProxyError::V1Malformed("empty field (double space?)"))
        );
    }

    #[test]
    fn v1_bad_addresses() {
        let src = ProxyError::V1Field(V1Field::SourceAddress);
        let dst = ProxyError::V1Field(V1Field::DestinationAddress);
        // Wrong family, either way round.
        assert_eq!(parse_header(b"PROXY TCP4 ::1 ::1 1 2\r\n"), Err(src));
        assert_eq!(
            parse_header(b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n"),
            Err(src)
        );
        assert_eq!(parse_header(b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n"), Err(dst));
        // Leading zeros, octets over 255, short forms, hostnames.
        assert_eq!(
            parse_header(b"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n"),
            Err(src)
        );
        assert_eq!(parse_header(b"PROXY TCP4 01"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP4 256"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP4 1.2.3.4.5"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP4 1..2"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP4 localhost"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP4 1.2.3.4 1.2.3.4x"), Err(dst));
        assert_eq!(parse_header(b"PROXY TCP6 fe80::1%eth0"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP6 1:::"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP6 1::2::"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP6 12345:"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP6 g"), Err(src));
        assert_eq!(parse_header(b"PROXY TCP6 1:2:3 ::1 1 2\r\n"), Err(src));
        // Valid beginnings wait.
        assert_eq!(parse_header(b"PROXY TCP4 25"), Ok(None));
        assert_eq!(parse_header(b"PROXY TCP4 1.2."), Ok(None));
        assert_eq!(parse_header(b"PROXY TCP6 ::ffff:1.2"), Ok(None));
    }

    #[test]
    fn v1_bad_ports() {
        let sport = ProxyError::V1Field(V1Field::SourcePort);
        let dport = ProxyError::V1Field(V1Field::DestinationPort);
        let with = |s: &str, d: &str| format!("PROXY TCP4 1.2.3.4 5.6.7.8 {s} {d}\r\n");
        for bad in [
            "+80", "-1", "080", "00", "65536", "99999", "123456", "8a", "0x50",
        ] {
            assert_eq!(parse_header(with(bad, "1").as_bytes()), Err(sport), "{bad}");
            assert_eq!(parse_header(with("1", bad).as_bytes()), Err(dport), "{bad}");
        }
        // Rejected before the line ends.
        assert_eq!(parse_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 +"), Err(sport));
        assert_eq!(parse_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0"), Ok(None));
        assert_eq!(parse_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 01"), Err(dport));
        assert_eq!(
            parse_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536"),
            Err(dport)
        );
    }

    #[test]
    fn v1_bad_layout() {
        let cases: [(&[u8], &str); 9] = [
            (
                b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
                "empty field (double space?)",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
                "more than four fields after the protocol",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3",
                "more than four fields after the protocol",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                "fewer than four fields after the protocol",
            ),
            (b"PROXY TCP4\r\n", "missing addresses and ports"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
                "line ends with LF without CR",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
                "CR not followed by LF",
            ),
            (b"PROXY UNKNOWN\r\r\n", "CR not followed by LF"),
            (
                b"PROXY UNKNOWN \x1b[2J\r\n",
                "non-printable byte after UNKNOWN",
            ),
        ];
        for (line, why) in cases {
            assert_eq!(
                parse_header(line),
                Err(ProxyError::V1Malformed(why)),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            parse_header(b"PROXY UNKNOWN\n"),
            Err(ProxyError::V1Malformed("line ends with LF without CR"))
        );
        assert_eq!(
            parse_header(b"PROXY UNKNOWN x\xff"),
            Err(ProxyError::V1Malformed("non-printable byte after UNKNOWN"))
        );
    }

    #[test]
    fn v1_too_long() {
        // 107 bytes without CRLF: the CRLF could only come later.
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_LEN - 1, b'a');
        assert_eq!(parse_header(&line), Ok(None));
        line.push(b'a');
        assert_eq!(parse_header(&line), Err(ProxyError::V1TooLong));
        // CR as byte 107: the LF would be byte 108.
        line.truncate(V1_MAX_LEN - 1);
        line.push(b'\r');
        assert_eq!(parse_header(&line), Err(ProxyError::V1TooLong));
        line.push(b'\n');
        assert_eq!(parse_header(&line), Err(ProxyError::V1TooLong));
        // A megabyte of it costs no more than 107 bytes' work and is the
        // same error.
        line.resize(1 << 20, b'a');
        assert_eq!(parse_header(&line), Err(ProxyError::V1TooLong));
    }

    // ---- v2: every field ----

    #[test]
    fn v2_tcp4_and_tcp6_fields() {
        let mut payload = vec![192, 0, 2, 1, 198, 51, 100, 2];
        payload.extend_from_slice(&443u16.to_be_bytes()); // source port
        payload.extend_from_slice(&80u16.to_be_bytes()); // destination port
        let bytes = v2(CMD_PROXY, 0x11, &payload);
        assert_incremental(&bytes, header(28, Some("192.0.2.1:443"), Version::V2));

        let mut payload = Ipv6Addr::from_str("2001:db8::7").unwrap().octets().to_vec();
        payload.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        payload.extend_from_slice(&[0xff, 0xff, 0, 1]);
        let bytes = v2(CMD_PROXY, 0x21, &payload);
        assert_incremental(&bytes, header(52, Some("[2001:db8::7]:65535"), Version::V2));
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut payload = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
        payload.extend_from_slice(&[0x01, 0, 2, b'h', b'2']); // ALPN
        payload.extend_from_slice(&[0x04, 0, 0]); // NOOP, empty
        payload.extend_from_slice(&[0xe0, 0, 3, 1, 2, 3]); // a custom type
        let bytes = v2(CMD_PROXY, 0x11, &payload);
        assert_incremental(&bytes, header(16 + 26, Some("10.0.0.1:1"), Version::V2));
    }

    #[test]
    fn v2_local_keeps_the_socket_peer_whatever_it_carries() {
        // The length field is honoured even for LOCAL, and the family and
        // any address bytes are ignored, as the spec says.
        for family in [0x00, 0x11, 0x21, 0x12, 0xff] {
            let bytes = v2(CMD_LOCAL, family, &[1, 2, 3, 4, 5]);
            assert_incremental(&bytes, header(21, None, Version::V2));
        }
    }

    #[test]
    fn v2_families_that_keep_the_socket_peer() {
        assert_incremental(&v2(CMD_PROXY, 0x00, &[]), header(16, None, Version::V2));
        assert_incremental(
            &v2(CMD_PROXY, 0x00, &[9; 12]),
            header(28, None, Version::V2),
        );
        let unix = v2(CMD_PROXY, 0x31, &[b'/'; 216]);
        assert_incremental(&unix, header(232, None, Version::V2));
    }

    #[test]
    fn v2_longest_header_is_accepted() {
        let mut payload = vec![127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2];
        let pad = V2_MAX_LEN - V2_FIXED_LEN - payload.len() - TLV_HEAD_LEN;
        payload.push(0x04);
        payload.extend_from_slice(&(pad as u16).to_be_bytes());
        payload.resize(V2_MAX_LEN - V2_FIXED_LEN, 0);
        let bytes = v2(CMD_PROXY, 0x11, &payload);
        assert_eq!(
            parse_header(&bytes),
            Ok(Some(header(V2_MAX_LEN, Some("127.0.0.1:1"), Version::V2)))
        );
    }

    // ---- v2: every rejection ----

    #[test]
    fn v2_bad_signature() {
        assert_eq!(parse_header(b"\r"), Ok(None));
        assert_eq!(parse_header(b"\r\n\r\n\0\r\nQU"), Ok(None));
        assert_eq!(
            parse_header(b"\r\n\r\n\0\r\nQUIX"),
            Err(ProxyError::NotHeader)
        );
        assert_eq!(parse_header(b"\r\n"), Ok(None));
        assert_eq!(parse_header(b"\r\n17\n"), Err(ProxyError::NotHeader));
        assert_eq!(parse_header(b"\n"), Err(ProxyError::NotHeader));
    }

    #[test]
    fn v2_bad_version_and_command() {
        // Rejected as soon as byte 13 arrives.
        let mut bytes = V2_SIGNATURE.to_vec();
        for (byte, error) in [
            (0x11, ProxyError::V2Version(1)),
            (0x31, ProxyError::V2Version(3)),
            (0x01, ProxyError::V2Version(0)),
            (0x22, ProxyError::V2Command(2)),
            (0x2f, ProxyError::V2Command(0xf)),
        ] {
            bytes.truncate(12);
            bytes.push(byte);
            assert_eq!(parse_header(&bytes), Err(error), "{byte:#x}");
        }
    }

    #[test]
    fn v2_bad_family() {
        // Invalid nibbles, datagrams and bare families, for PROXY only.
        for family in [
            0x12, 0x22, 0x32, 0x10, 0x20, 0x30, 0x01, 0x02, 0x13, 0x41, 0xff,
        ] {
            let mut bytes = V2_SIGNATURE.to_vec();
            bytes.extend_from_slice(&[0x21, family]);
            assert_eq!(parse_header(&bytes), Err(ProxyError::V2Family(family)));
        }
    }

    #[test]
    fn v2_too_long_is_rejected_on_its_length_field() {
        let mut bytes = V2_SIGNATURE.to_vec();
        let block = (V2_MAX_LEN - V2_FIXED_LEN + 1) as u16;
        bytes.extend_from_slice(&[0x21, 0x11]);
        bytes.extend_from_slice(&block.to_be_bytes());
        assert_eq!(
            parse_header(&bytes),
            Err(ProxyError::V2TooLong(V2_MAX_LEN + 1))
        );
        bytes.truncate(14);
        bytes.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(parse_header(&bytes), Err(ProxyError::V2TooLong(16 + 65535)));
        // LOCAL is bounded too.
        bytes[12] = 0x20;
        assert_eq!(parse_header(&bytes), Err(ProxyError::V2TooLong(16 + 65535)));
    }

    #[test]
    fn v2_short_addresses() {
        for (family, need) in [(0x11, 12), (0x21, 36), (0x31, 216)] {
            let bytes = v2(CMD_PROXY, family, &[0; 11]);
            // Known from the length field, before the block arrives.
            assert_eq!(
                parse_header(&bytes[..16]),
                Err(ProxyError::V2Addresses { got: 11, need })
            );
        }
    }

    #[test]
    fn v2_bad_tlvs() {
        let addresses = [127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2];
        for tlvs in [
            &[0x01][..],
            &[0x01, 0],
            &[0x01, 0, 3, b'a', b'b'],
            &[0x04, 0, 0, 0x05],
        ] {
            let payload = [&addresses[..], tlvs].concat();
            let bytes = v2(CMD_PROXY, 0x11, &payload);
            assert_eq!(parse_header(&bytes), Err(ProxyError::V2Tlv), "{tlvs:?}");
        }
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

    // ---- trusted proxies ----

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn default_trusts_loopback_only() {
        let trusted = TrustedProxies::default();
        assert_eq!(trusted.to_string(), "127.0.0.0/8,::1/128");
        assert_eq!(trusted, "127.0.0.0/8,::1/128".parse().unwrap());
        for yes in ["127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1"] {
            assert!(trusted.contains(ip(yes)), "{yes}");
            assert_eq!(trusted.check(ip(yes)), Ok(()));
        }
        for no in [
            "128.0.0.1",
            "10.0.0.1",
            "::2",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
        ] {
            assert!(!trusted.contains(ip(no)), "{no}");
            assert_eq!(trusted.check(ip(no)), Err(ProxyError::Untrusted));
        }
    }

    #[test]
    fn parses_cidr_lists() {
        let trusted: TrustedProxies = " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,fe80::1"
            .parse()
            .unwrap();
        assert_eq!(
            trusted.to_string(),
            "10.0.0.0/8,192.0.2.7/32,2001:db8::/32,fe80::1/128"
        );
        assert!(trusted.contains(ip("10.200.0.1")));
        assert!(trusted.contains(ip("::ffff:10.1.2.3")));
        assert!(trusted.contains(ip("192.0.2.7")));
        assert!(!trusted.contains(ip("192.0.2.8")));
        assert!(trusted.contains(ip("2001:db8:ffff::1")));
        assert!(!trusted.contains(ip("2001:db9::1")));
        assert!(trusted.contains(ip("fe80::1")));
        assert!(!trusted.contains(ip("fe80::2")));
        // Host bits are cleared; /0 trusts everyone of that family.
        let trusted: TrustedProxies = "10.1.2.3/8,::/0".parse().unwrap();
        assert_eq!(trusted.to_string(), "10.0.0.0/8,::/0");
        assert!(trusted.contains(ip("2001:db8::1")));
        assert!(!trusted.contains(ip("11.0.0.1")));
        // An IPv6 network written for mapped addresses matches both forms.
        let trusted: TrustedProxies = "::ffff:10.0.0.0/104,::ffff:0:0/95".parse().unwrap();
        assert_eq!(trusted.to_string(), "10.0.0.0/8,::fffe:0:0/95");
        assert!(trusted.contains(ip("::ffff:10.9.9.9")));
        assert!(trusted.contains(ip("10.9.9.9")));
        assert!(!trusted.contains(ip("11.9.9.9")));
    }

    #[test]
    fn rejects_bad_lists_with_clear_messages() {
        let err = |s: &str| s.parse::<TrustedProxies>().unwrap_err();
        assert_eq!(err(""), TrustError::Empty);
        assert_eq!(err("  "), TrustError::Empty);
        assert_eq!(err("10.0.0.0/8,,::1"), TrustError::EmptyEntry);
        assert_eq!(err("10.0.0.0/8,"), TrustError::EmptyEntry);
        assert_eq!(
            err("example.com"),
            TrustError::Address("example.com".into())
        );
        assert_eq!(err("10.0.0/8"), TrustError::Address("10.0.0/8".into()));
        assert_eq!(err("[::1]/128"), TrustError::Address("[::1]/128".into()));
        for (entry, max) in [
            ("10.0.0.0/33", 32),
            ("10.0.0.0/", 32),
            ("10.0.0.0/+8", 32),
            ("10.0.0.0/-1", 32),
            ("10.0.0.0/8/8", 32),
            ("10.0.0.0/0008", 32),
            ("::1/129", 128),
            ("::1/256", 128),
            ("::1/x", 128),
        ] {
            assert_eq!(
                err(entry),
                TrustError::Prefix {
                    entry: entry.into(),
                    max
                },
                "{entry}"
            );
        }
        assert_eq!(
            err("10.0.0.0/33").to_string(),
            "'10.0.0.0/33': the prefix length must be 0-32"
        );
        assert_eq!(
            err("nope").to_string(),
            "'nope' is not an IP address or CIDR (e.g. 10.0.0.0/8 or 2001:db8::/32)"
        );
    }
}
