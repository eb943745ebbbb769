//! Fuzzes the PROXY header parser: no panic on any bytes, and the model
//! properties the connection path relies on:
//!
//! * a header's `len` is within the buffer and the version's bound, and the
//!   header does not depend on the bytes after it;
//! * reading a connection one byte at a time gives `Ok(None)` until the
//!   header is complete, and never changes its mind after that: once an
//!   error shows, every longer prefix shows the same error; once a header
//!   shows, every longer prefix shows the same header;
//! * a well-formed header built from the fuzz bytes (v1 or v2, IPv4 or
//!   IPv6, with TLVs) is accepted with exactly the address it carries,
//!   whatever follows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prime_server::net::{
    parse_header, Header, ProxyError, Version, V1_MAX_LEN, V2_MAX_LEN, V2_SIGNATURE,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fuzz_target!(|data: &[u8]| {
    check_any_bytes(data);
    if let Some((bytes, expected)) = build_valid(data) {
        check_valid(&bytes, expected);
    }
});

/// Properties that hold for every input.
fn check_any_bytes(data: &[u8]) {
    if let Ok(Some(header)) = parse_header(data) {
        assert!(header.len <= data.len());
        match header.version {
            Version::V1 => assert!((15..=V1_MAX_LEN).contains(&header.len)),
            Version::V2 => assert!((16..=V2_MAX_LEN).contains(&header.len)),
        }
        assert_eq!(parse_header(&data[..header.len]), Ok(Some(header)));
    }
    // Walk the prefixes a connection would buffer (no header is longer
    // than V2_MAX_LEN, so nothing changes past it).
    let walk = data.len().min(V2_MAX_LEN + 8);
    let mut seen: Option<Result<Header, ProxyError>> = None;
    for cut in 0..=walk {
        let now = parse_header(&data[..cut]);
        match seen {
            None => seen = now.transpose(),
            Some(first) => assert_eq!(now, first.map(Some), "changed its mind at {cut}"),
        }
    }
}

/// A valid header built from the fuzz bytes, followed by all of them.
fn build_valid(data: &[u8]) -> Option<(Vec<u8>, Header)> {
    let (&kind, rest) = data.split_first()?;
    let mut out = Vec::new();
    let source = match kind % 4 {
        0 | 2 => {
            let f: &[u8; 12] = rest.get(..12)?.try_into().ok()?;
            let src = Ipv4Addr::new(f[0], f[1], f[2], f[3]);
            let dst = Ipv4Addr::new(f[4], f[5], f[6], f[7]);
            let (sport, dport) = (
                u16::from_be_bytes([f[8], f[9]]),
                u16::from_be_bytes([f[10], f[11]]),
            );
            if kind % 4 == 0 {
                out.extend_from_slice(
                    format!("PROXY TCP4 {src} {dst} {sport} {dport}\r\n").as_bytes(),
                );
            } else {
                v2_header(&mut out, 0x11, &f[..], &rest[12..]);
            }
            SocketAddr::new(IpAddr::V4(src), sport)
        }
        _ => {
            let f: &[u8; 36] = rest.get(..36)?.try_into().ok()?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&f[..16]);
            let src = Ipv6Addr::from(octets);
            octets.copy_from_slice(&f[16..32]);
            let dst = Ipv6Addr::from(octets);
            let (sport, dport) = (
                u16::from_be_bytes([f[32], f[33]]),
                u16::from_be_bytes([f[34], f[35]]),
            );
            if kind % 4 == 1 {
                out.extend_from_slice(
                    format!("PROXY TCP6 {src} {dst} {sport} {dport}\r\n").as_bytes(),
                );
            } else {
                v2_header(&mut out, 0x21, &f[..], &rest[36..]);
            }
            SocketAddr::new(IpAddr::V6(src), sport)
        }
    };
    let version = if kind % 4 < 2 {
        Version::V1
    } else {
        Version::V2
    };
    let expected = Header {
        len: out.len(),
        source: Some(source),
        version,
    };
    out.extend_from_slice(data);
    Some((out, expected))
}

/// Appends a v2 PROXY header: the addresses, then the fuzz bytes cut into
/// TLVs (each takes its type and length from them), as many as fit.
fn v2_header(out: &mut Vec<u8>, family: u8, addresses: &[u8], mut tlv_source: &[u8]) {
    let mut tlvs = Vec::new();
    while let [kind, len, rest @ ..] = tlv_source {
        let len = usize::from(*len).min(rest.len());
        if 16 + addresses.len() + tlvs.len() + 3 + len > V2_MAX_LEN {
            break;
        }
        tlvs.push(*kind);
        tlvs.extend_from_slice(&(len as u16).to_be_bytes());
        tlvs.extend_from_slice(&rest[..len]);
        tlv_source = &rest[len..];
    }
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    out.push(family);
    out.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
    out.extend_from_slice(addresses);
    out.extend_from_slice(&tlvs);
}

/// A valid header arriving byte by byte: `Ok(None)` until it is complete,
/// then exactly the expected header, whatever follows.
fn check_valid(bytes: &[u8], expected: Header) {
    for cut in 0..expected.len {
        assert_eq!(parse_header(&bytes[..cut]), Ok(None), "cut {cut}");
    }
    assert_eq!(parse_header(&bytes[..expected.len]), Ok(Some(expected)));
    assert_eq!(parse_header(bytes), Ok(Some(expected)));
}
