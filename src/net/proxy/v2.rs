//! PROXY protocol v2: the binary header, version 2, commands `LOCAL` and
//! `PROXY`, TLVs skipped but framed (see the decisions in [`super`]).

use super::{agrees, Header, ProxyError, Version, V2_FIXED_LEN, V2_MAX_LEN, V2_SIGNATURE};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bytes of a TLV's type and length.
const TLV_HEAD_LEN: usize = 3;

/// The v2 `LOCAL` command: a connection the proxy made itself.
pub(super) const CMD_LOCAL: u8 = 0x0;
/// The v2 `PROXY` command: a relayed client connection.
pub(super) const CMD_PROXY: u8 = 0x1;

/// Parses a v2 header from a buffer starting with CR.
pub(super) fn parse_v2(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
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

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_incremental, header, v2};
    use super::super::*;
    use super::*;
    use std::str::FromStr;

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
}
