//! PROXY protocol v1: the text header (`PROXY TCP4 ...\r\n`), exactly the
//! spec's grammar (see the decisions in [`super`]).

use super::{agrees, Header, ProxyError, V1Field, Version, V1_MAX_LEN};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// What every v1 header starts with, the separator included.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest textual IPv6 address (with an embedded IPv4 tail).
const IPV6_TEXT_MAX: usize = 45;

/// Parses a v1 header from a buffer starting with `P`.
pub(super) fn parse_v1(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
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
    /// length, group sizes, one `::`, a dotted group that can still be an
    /// IPv4 address), since the whole token is checked by
    /// [`Family::parse`] once its space or CR arrives. Either way a token
    /// that fails never passes once it grows, so a prefix the parser has
    /// rejected stays rejected.
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
                    && token.split(|&b| b == b':').all(|g| {
                        if g.contains(&b'.') {
                            // Only an IPv4 address at the end has dots.
                            Family::V4.could_start(g)
                        } else {
                            g.len() <= 4
                        }
                    })
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

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_incremental, header};
    use super::super::*;

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
        // A dot does not revive a group that is already too long or not
        // decimal (found by the proxy_header fuzz target).
        assert_eq!(parse_header(b"PROXY TCP6 12345."), Err(src));
        assert_eq!(parse_header(b"PROXY TCP6 ::ffff:abc."), Err(src));
        assert_eq!(parse_header(b"PROXY TCP6 ::ffff:1.2.3.4."), Err(src));
    }

    #[test]
    fn v1_a_rejected_prefix_stays_rejected() {
        // The fuzz target's finding, minimised by hand: a 17-digit group
        // was rejected, and the same bytes plus a dot were "read more".
        for bytes in [
            &b"PROXY TCP6 cccccceeeeeeeeeee.eee99 ::1 1 2\r\n"[..],
            b"PROXY TCP6 12345.6 ::1 1 2\r\n",
            b"PROXY TCP4 256.1.2.3 1.2.3.4 1 2\r\n",
        ] {
            let mut first = None;
            for cut in 0..=bytes.len() {
                let now = parse_header(&bytes[..cut]);
                match first {
                    None if now != Ok(None) => first = Some(now),
                    Some(ref decided) => assert_eq!(&now, decided, "changed its mind at {cut}"),
                    None => {}
                }
            }
            assert!(
                matches!(first, Some(Err(_))),
                "{:?} must be rejected",
                String::from_utf8_lossy(bytes)
            );
        }
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
}
