//! Crowds: many connections that hold a server's attention without asking
//! it anything, opened before a measurement and kept open through it.
//!
//! * **Stalled** clients send one byte (`1`, no newline) and stop: a line
//!   that never completes, the cheapest way to hold a thread of a blocking
//!   server.
//! * **Idle** keep-alive clients send one whole line, read its answer, and
//!   then idle, as a pooled client connection does between requests.
//!
//! Each connection is bound to a source address in 127.0.0.0/8 (every such
//! address is local on Linux), spread over as many addresses as asked, so
//! the crowd looks like many clients to per-address rules and does not run
//! one address out of ephemeral ports. Opening is done by a few threads
//! with blocking sockets: it happens once per table, outside the measured
//! time.

use anyhow::{bail, Context};
use socket2::{Domain, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Longest a crowd client may take to connect or get its answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Threads opening a crowd: enough to overlap round trips on loopback.
const OPENERS: usize = 4;

/// What the crowd's clients do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Send `1` without a newline, then nothing.
    Stalled,
    /// Send `17\n`, read `T\n`, then nothing (the server needs
    /// `--keep-alive` to keep the connection).
    Idle,
}

impl Behaviour {
    /// The name in reports, plural.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Stalled => "stalled clients",
            Behaviour::Idle => "idle keep-alive connections",
        }
    }
}

/// `count` distinct source addresses in 127.0.0.0/8 from `first` on,
/// skipping those ending in .0 and .255 (network and broadcast-looking
/// addresses some tools treat specially).
///
/// # Errors
///
/// `first` is not in 127.0.0.0/8, or the range runs past 127.255.255.254.
pub fn source_addresses(first: Ipv4Addr, count: usize) -> anyhow::Result<Vec<Ipv4Addr>> {
    if first.octets()[0] != 127 {
        bail!("{first} is not a loopback address");
    }
    let mut out = Vec::with_capacity(count);
    let mut next = u32::from(first);
    while out.len() < count {
        let addr = Ipv4Addr::from(next);
        if addr.octets()[0] != 127 {
            bail!("not enough loopback addresses from {first} for {count} sources");
        }
        if !matches!(addr.octets()[3], 0 | 255) {
            out.push(addr);
        }
        next += 1;
    }
    Ok(out)
}

/// An open crowd; dropping it closes every connection.
#[derive(Debug)]
pub struct Crowd {
    /// The connections, in the order opened.
    streams: Vec<TcpStream>,
}

impl Crowd {
    /// Opens `count` connections to `server`, client `i` from
    /// `sources[i % sources.len()]`, each behaving as `behaviour` says.
    ///
    /// # Errors
    ///
    /// A connection could not be made, or an idle client did not get `T`
    /// for its line.
    pub fn open(
        server: SocketAddr,
        behaviour: Behaviour,
        count: usize,
        sources: &[Ipv4Addr],
    ) -> anyhow::Result<Crowd> {
        if sources.is_empty() {
            bail!("a crowd needs at least one source address");
        }
        let chunk = count.div_ceil(OPENERS).max(1);
        let parts: Vec<anyhow::Result<Vec<TcpStream>>> = std::thread::scope(|scope| {
            let openers: Vec<_> = (0..count)
                .step_by(chunk)
                .map(|start| {
                    scope.spawn(move || {
                        (start..(start + chunk).min(count))
                            .map(|i| join(server, sources[i % sources.len()], behaviour))
                            .collect()
                    })
                })
                .collect();
            openers
                .into_iter()
                .map(|o| {
                    o.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a crowd opener panicked")))
                })
                .collect()
        });
        let mut streams = Vec::with_capacity(count);
        for part in parts {
            streams.extend(part?);
        }
        Ok(Crowd { streams })
    }

    /// How many connections the crowd holds.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// How many connections are still open with nothing to read: the
    /// server neither closed them nor answered (a stalled client must get
    /// no reply; an idle one none beyond its first).
    pub fn still_open(&self) -> usize {
        self.streams
            .iter()
            .filter(|stream| {
                let mut byte = [0u8; 1];
                stream.set_nonblocking(true).is_ok()
                    && matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
            })
            .count()
    }
}

/// One crowd client: connected from `source`, its part played.
fn join(server: SocketAddr, source: Ipv4Addr, behaviour: Behaviour) -> anyhow::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .with_context(|| format!("cannot bind a client socket to {source}"))?;
    socket
        .connect_timeout(&server.into(), IO_TIMEOUT)
        .with_context(|| format!("cannot connect from {source} to {server}"))?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    match behaviour {
        Behaviour::Stalled => stream.write_all(b"1")?,
        Behaviour::Idle => {
            stream.write_all(b"17\n")?;
            let mut reply = [0u8; 2];
            stream
                .read_exact(&mut reply)
                .with_context(|| format!("an idle client from {source} got no answer"))?;
            if &reply != b"T\n" {
                bail!("an idle client from {source} got {reply:?} for 17, not T");
            }
        }
    }
    Ok(stream)
}

/// Raises this process's soft limit on open files to its hard limit (the
/// crowds hold thousands of sockets; the default soft limit is often
/// 1024) and returns the new soft limit. A direct `setrlimit`: two libc
/// calls, less than a crate's worth.
///
/// # Errors
///
/// The limit could not be read or raised.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid pointer to a live rlimit; the call only writes it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: a valid pointer to a live rlimit; the call only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn sources_are_distinct_loopback_addresses_without_0_or_255() {
        let sources = source_addresses(Ipv4Addr::new(127, 0, 1, 1), 300).unwrap();
        assert_eq!(sources.len(), 300);
        assert_eq!(sources[0], Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(sources[253], Ipv4Addr::new(127, 0, 1, 254));
        // .255 and .0 are skipped.
        assert_eq!(sources[254], Ipv4Addr::new(127, 0, 2, 1));
        let mut unique = sources.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 300);
        assert!(sources
            .iter()
            .all(|a| a.octets()[0] == 127 && !matches!(a.octets()[3], 0 | 255)));
        assert!(source_addresses(Ipv4Addr::new(10, 0, 0, 1), 1).is_err());
        assert!(source_addresses(Ipv4Addr::new(127, 255, 255, 250), 10).is_err());
    }

    #[test]
    fn a_stalled_crowd_comes_from_its_sources_and_sees_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sources = source_addresses(Ipv4Addr::new(127, 0, 3, 1), 3).unwrap();
        let crowd = Crowd::open(addr, Behaviour::Stalled, 7, &sources).unwrap();
        assert_eq!(crowd.len(), 7);
        let mut accepted = Vec::new();
        for _ in 0..7 {
            let (mut stream, peer) = listener.accept().unwrap();
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).unwrap();
            assert_eq!(&byte, b"1");
            accepted.push((stream, peer));
        }
        let mut seen: Vec<Ipv4Addr> = accepted
            .iter()
            .map(|(_, peer)| match peer.ip() {
                std::net::IpAddr::V4(v4) => v4,
                other => panic!("{other}"),
            })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, sources);
        assert_eq!(crowd.still_open(), 7);
        // Closing two and answering one leaves four stalled.
        drop(accepted.pop());
        drop(accepted.pop());
        accepted[0].0.write_all(b"T\n").unwrap();
        // The close and the byte are on loopback: wait for them, bounded.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while crowd.still_open() != 4 && std::time::Instant::now() < until {
            std::thread::yield_now();
        }
        assert_eq!(crowd.still_open(), 4);
    }

    #[test]
    fn an_idle_client_insists_on_a_true_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers T, then F; keeps both connections open until joined.
        let server = std::thread::spawn(move || {
            let mut kept = Vec::new();
            for reply in [&b"T\n"[..], b"F\n"] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut line = [0u8; 3];
                stream.read_exact(&mut line).unwrap();
                assert_eq!(&line, b"17\n");
                stream.write_all(reply).unwrap();
                kept.push(stream);
            }
            kept
        });
        let sources = [Ipv4Addr::LOCALHOST];
        let crowd = Crowd::open(addr, Behaviour::Idle, 1, &sources).unwrap();
        assert_eq!(crowd.still_open(), 1);
        let error = Crowd::open(addr, Behaviour::Idle, 1, &sources).unwrap_err();
        assert!(error.to_string().contains("not T"), "{error}");
        let _kept = server.join().unwrap();
    }

    #[test]
    fn the_open_files_limit_ends_at_the_hard_limit() {
        let soft = raise_open_files_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid pointer to a live rlimit.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) },
            0
        );
        assert_eq!((soft, limit.rlim_cur), (limit.rlim_max, limit.rlim_max));
    }
}
