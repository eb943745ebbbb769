//! `--trusted-proxies`: the peers whose PROXY headers are believed (CIDRs,
//! through `ipnet`).

use super::ProxyError;
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use thiserror::Error;

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
