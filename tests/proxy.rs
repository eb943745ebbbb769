//! The PROXY protocol against the real binaries (`--proxy-protocol`,
//! `--trusted-proxies`): whose header is believed, what a missing,
//! malformed, truncated or never-finished header gets (nothing: no reply,
//! no audit line, a `warn` record and a count), v2 `LOCAL`, a header
//! trickled in one byte per segment, per-address limits on the proxied
//! address, and the echo server taking the same option.
//! docs/operations.md#scaling-out. Loopback only; every wait is bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown as Half, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use test_support::{
    audit::parse_audit,
    io::{connect, connect_sending, read_to_close, try_connect_from, wait_until, IO_TIMEOUT},
    process::ServerProcess,
    proxy::{proxy_v1, proxy_v2, proxy_v2_local},
    sock_diag::server_read,
};

const PROXIED: [&str; 3] = ["--proxy-protocol", "--admin-listen", "127.0.0.1:0"];
const REJECTIONS: &str = "prime_server_proxy_header_rejections_total";
const WARNING: &str = "bad PROXY protocol header";

/// `--proxy-protocol`, the admin endpoint, and `extra`.
fn proxied(extra: &[&'static str]) -> ServerProcess {
    let mut args = PROXIED.to_vec();
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

fn localhost(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Writes `bytes` (tolerating a server that already closed), half-closes
/// and reads until the server closes: what a turned-away client sees.
fn send_and_read(mut stream: TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Half::Write);
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => reply,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => reply,
        Err(e) => panic!("reading the reply failed: {e}"),
    }
}

/// `bytes` in one write from 127.0.0.1, then half-close; the reply.
fn send(server: &ServerProcess, bytes: &[u8]) -> Vec<u8> {
    send_and_read(connect(server.addr), bytes)
}

/// `parts` joined.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Stops the server with SIGTERM; asserts it exits 0 and its summary
/// counts `rejected` PROXY rejections; returns its audit lines' peers.
fn stop(mut server: ServerProcess, rejected: u64) -> Vec<String> {
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait(IO_TIMEOUT).code(),
        Some(0),
        "{}",
        server.stderr()
    );
    let stderr = server.stderr();
    let summary = stderr
        .lines()
        .find(|l| l.contains("shutdown complete"))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let counted = summary
        .split("proxy_rejected: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(counted, Some(rejected), "{summary}");
    server
        .audit_lines()
        .iter()
        .map(|l| parse_audit(l).peer)
        .collect()
}

/// Waits for `n` warn records about a bad header, each naming `reason`.
fn expect_warnings(server: &ServerProcess, n: usize, reason: &str) {
    let found = server.wait_for_stderr(IO_TIMEOUT, |text| {
        text.lines()
            .filter(|l| l.contains("WARN") && l.contains(WARNING) && l.contains(reason))
            .count()
            >= n
    });
    assert!(
        found,
        "expected {n} warn record(s) with {reason:?}: {}",
        server.stderr()
    );
}

#[test]
fn v1_and_v2_headers_from_a_trusted_peer_name_the_client() {
    let server = proxied(&[]);
    let v4 = addr("192.0.2.7:5555");
    let v6 = addr("[2001:db8::1]:4444");
    let to6 = addr("[2001:db8::2]:8809");
    for (header, line, reply) in [
        (proxy_v1(v4, server.addr), "17\n", "T\n"),
        (proxy_v1(v6, to6), "4\n", "F\n"),
        (proxy_v2(v4, server.addr), "4j\n", "E\n"),
        (proxy_v2(v6, to6), "29\n", "T\n"),
    ] {
        let reply_got = send(&server, &cat(&[&header, line.as_bytes()]));
        assert_eq!(String::from_utf8_lossy(&reply_got), reply, "{header:?}");
    }
    assert_eq!(server.metric(REJECTIONS), 0.0);
    let peers = stop(server, 0);
    assert_eq!(
        peers,
        [
            "192.0.2.7:5555",
            "[2001:db8::1]:4444",
            "192.0.2.7:5555",
            "[2001:db8::1]:4444"
        ]
    );
}

#[test]
fn a_header_from_an_untrusted_peer_is_refused() {
    let server = proxied(&["--trusted-proxies", "127.0.0.2/32"]);
    let header = proxy_v2(addr("192.0.2.7:5555"), server.addr);
    let request = cat(&[&header, b"17\n"]);
    // From 127.0.0.1, which is not the proxy: turned away, even though the
    // header itself is perfect.
    let untrusted = try_connect_from(localhost(1), server.addr).expect("connect");
    assert_eq!(send_and_read(untrusted, &request), b"");
    assert_eq!(server.metric(REJECTIONS), 1.0);
    expect_warnings(&server, 1, "not in --trusted-proxies");
    assert!(server.stderr().contains("peer: 127.0.0.1:"));
    // From 127.0.0.2, the proxy: served, and the client is the header's.
    let trusted = try_connect_from(localhost(2), server.addr).expect("connect");
    assert_eq!(send_and_read(trusted, &request), b"T\n");
    assert_eq!(server.metric(REJECTIONS), 1.0);
    assert_eq!(stop(server, 1), ["192.0.2.7:5555"]);
}

#[test]
fn a_missing_header_is_refused() {
    let server = proxied(&[]);
    assert_eq!(send(&server, b"17\n"), b"");
    // Turned away on its first byte, not at the deadline: the default
    // request timeout is 5 s, and this must not wait for it.
    let started = Instant::now();
    let mut open = connect_sending(server.addr, b"17\n");
    assert_eq!(read_to_close(&mut open), b"");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.metric(REJECTIONS), 2.0);
    expect_warnings(&server, 2, "no PROXY protocol header");
    assert!(stop(server, 2).is_empty());
}

#[test]
fn malformed_headers_are_refused() {
    let server = proxied(&[]);
    let good_v2 = proxy_v2(addr("192.0.2.7:5555"), server.addr);
    let mut bad_version = good_v2.clone();
    bad_version[12] = 0x11; // version 1 in a binary header
    let mut datagram = good_v2.clone();
    datagram[13] = 0x12; // TCP4 -> UDP4
    let mut short_block = good_v2.clone();
    short_block[15] = 11; // 11 bytes cannot hold two IPv4 addresses and ports
    short_block.truncate(16 + 11);
    let mut tlv_overrun = good_v2.clone();
    tlv_overrun[15] += 3;
    tlv_overrun.extend_from_slice(&[0x01, 0, 9]); // a TLV of 9 bytes with none
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"PROXY TCP4 192.0.2.7 127.0.0.1 +5555 8809\r\n17\n".to_vec(),
            "has a bad source port",
        ),
        (
            b"PROXY TCP4 2001:db8::1 127.0.0.1 5555 8809\r\n17\n".to_vec(),
            "has a bad source address",
        ),
        (
            b"PROXY  TCP4 192.0.2.7 127.0.0.1 5555 8809\r\n17\n".to_vec(),
            "double space",
        ),
        (
            b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 8809\n17\n".to_vec(),
            "LF without CR",
        ),
        (b"PROXY TCP5 1.2.3.4\r\n17\n".to_vec(), "has a bad protocol"),
        (
            cat(&[&bad_version, b"17\n"]),
            "protocol version 1 in a binary",
        ),
        (cat(&[&datagram, b"17\n"]), "family and transport 0x12"),
        (cat(&[&short_block, b"17\n"]), "address block of 11 bytes"),
        (cat(&[&tlv_overrun, b"17\n"]), "TLV overrunning"),
    ];
    for (i, (bytes, reason)) in cases.iter().enumerate() {
        assert_eq!(send(&server, bytes), b"", "{bytes:?}");
        expect_warnings(&server, 1, reason);
        assert_eq!(server.metric(REJECTIONS), (i + 1) as f64, "{bytes:?}");
    }
    // The same header, well formed, is served: the cases above fail for
    // the byte each one breaks, not for something they share.
    assert_eq!(send(&server, &cat(&[&good_v2, b"17\n"])), b"T\n");
    assert_eq!(stop(server, cases.len() as u64), ["192.0.2.7:5555"]);
}

#[test]
fn a_header_cut_short_by_a_half_close_is_refused() {
    let server = proxied(&[]);
    let v1 = proxy_v1(addr("192.0.2.7:5555"), server.addr);
    let v2 = proxy_v2(addr("[2001:db8::1]:4444"), addr("[2001:db8::2]:80"));
    // Cut inside the text, before the CR, between CR and LF; inside the v2
    // signature, its fixed part, and its address block.
    let cuts: Vec<&[u8]> = vec![
        &v1[..3],
        &v1[..12],
        &v1[..v1.len() - 2],
        &v1[..v1.len() - 1],
        &v2[..5],
        &v2[..14],
        &v2[..16],
        &v2[..v2.len() - 1],
    ];
    for cut in &cuts {
        assert_eq!(send(&server, cut), b"", "{cut:?}");
    }
    assert_eq!(server.metric(REJECTIONS), cuts.len() as f64);
    expect_warnings(&server, cuts.len(), "not complete");
    assert!(stop(server, cuts.len() as u64).is_empty());
}

#[test]
fn a_header_that_never_completes_is_refused_at_the_deadline() {
    let server = proxied(&["--request-timeout", "500ms"]);
    let v1 = proxy_v1(addr("192.0.2.7:5555"), server.addr);
    let v2 = proxy_v2(addr("192.0.2.7:5555"), server.addr);
    for partial in [&v1[..20], &v2[..20]] {
        let started = Instant::now();
        let mut stalled = connect_sending(server.addr, partial);
        // The client keeps the connection open; the server closes it.
        assert_eq!(read_to_close(&mut stalled), b"");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
            "closed after {waited:?}"
        );
    }
    assert_eq!(server.metric(REJECTIONS), 2.0);
    // A rejection, not a request timeout: there was never a request.
    assert_eq!(server.metric("prime_server_timeouts_total"), 0.0);
    expect_warnings(&server, 2, "not complete");
    assert!(stop(server, 2).is_empty());
}

#[test]
fn a_v2_local_header_keeps_the_socket_peer() {
    let server = proxied(&[]);
    let stream = connect(server.addr);
    let me = stream.local_addr().expect("local addr");
    assert_eq!(
        send_and_read(stream, &cat(&[&proxy_v2_local(), b"17\n"])),
        b"T\n"
    );
    assert_eq!(stop(server, 0), [me.to_string()]);
}

#[test]
fn a_header_split_across_many_small_writes_is_reassembled() {
    let server = proxied(&[]);
    let v4 = addr("192.0.2.7:5555");
    let v6 = addr("[2001:db8::1]:4444");
    for request in [
        cat(&[&proxy_v1(v4, server.addr), b"17\n"]),
        cat(&[&proxy_v2(v6, addr("[2001:db8::2]:80")), b"17\n"]),
    ] {
        let mut stream = connect(server.addr);
        stream.set_nodelay(true).expect("nodelay");
        let me = stream.local_addr().expect("local addr");
        for (i, byte) in request.iter().enumerate() {
            stream.write_all(&[*byte]).expect("write one byte");
            // The server must have read exactly the bytes sent so far
            // before the next is sent, so it really sees the header one
            // byte at a time.
            if i + 1 < request.len() {
                let sent = i as u64 + 1;
                assert!(
                    wait_until(IO_TIMEOUT, || server_read(server.addr, me) == Some(sent)),
                    "the server did not read byte {i} of {request:?} on its own: read {:?}",
                    server_read(server.addr, me)
                );
            }
        }
        assert_eq!(read_to_close(&mut stream), b"T\n");
    }
    assert_eq!(server.metric(REJECTIONS), 0.0);
    assert_eq!(stop(server, 0), ["192.0.2.7:5555", "[2001:db8::1]:4444"]);
}

#[test]
fn a_client_cannot_choose_its_logged_address() {
    // Without --proxy-protocol a header is just a line that is not an
    // integer, and the socket peer is logged.
    let plain = ServerProcess::start(&[]);
    let forged = proxy_v1(addr("203.0.113.9:4444"), plain.addr);
    let stream = connect(plain.addr);
    let me = stream.local_addr().expect("local addr");
    assert_eq!(send_and_read(stream, &cat(&[&forged, b"17\n"])), b"E\n");
    let lines = plain.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(parse_audit(&lines[0]).peer, me.to_string());
    assert!(lines[0].contains("PROXY TCP4 203.0.113.9"), "{lines:?}");

    // Behind a trusted proxy, a client's own header comes after the
    // proxy's: it is the client's request line, not a second header.
    let server = proxied(&[]);
    let request = cat(&[
        &proxy_v2(addr("192.0.2.7:5555"), server.addr),
        &proxy_v1(addr("203.0.113.9:4444"), server.addr),
        b"17\n",
    ]);
    assert_eq!(send(&server, &request), b"E\n");
    // From a peer that is not trusted, the header is refused outright (see
    // a_header_from_an_untrusted_peer_is_refused).
    assert_eq!(stop(server, 0), ["192.0.2.7:5555"]);
}

#[test]
fn per_address_limits_use_the_proxied_address() {
    let server = proxied(&["--max-connections-per-ip", "1", "--request-timeout", "60s"]);
    let client = |source: &str| proxy_v2(addr(source), server.addr);
    // One connection from 192.0.2.7, held open mid-line.
    let mut held = connect_sending(server.addr, &cat(&[&client("192.0.2.7:1000"), b"1"]));
    assert!(wait_until(IO_TIMEOUT, || {
        server.metric("prime_server_connections_waiting") == 1.0
    }));
    // A second from the same client address is refused, although every
    // socket peer here is 127.0.0.1 either way...
    let second = cat(&[&client("192.0.2.7:1001"), b"17\n"]);
    assert_eq!(send(&server, &second), b"");
    assert_eq!(server.metric("prime_server_per_ip_refusals_total"), 1.0);
    // ...and one from another client address is served.
    let other = cat(&[&client("192.0.2.8:1002"), b"17\n"]);
    assert_eq!(send(&server, &other), b"T\n");
    held.write_all(b"7\n").expect("finish the line");
    assert_eq!(read_to_close(&mut held), b"T\n");
    assert_eq!(server.metric("prime_server_per_ip_refusals_total"), 1.0);
    assert_eq!(stop(server, 0), ["192.0.2.8:1002", "192.0.2.7:1000"]);
}

#[test]
fn the_echo_server_takes_the_proxy_protocol_too() {
    let mut server = ServerProcess::start_echo(&[
        "--proxy-protocol",
        "--log-level",
        "debug",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let header = proxy_v1(addr("192.0.2.7:5555"), server.addr);
    assert_eq!(
        send(&server, &cat(&[&header, b"hello\nworld\n"])),
        b"GOT:hello\nGOT:world\n"
    );
    server.expect_stderr("peer: 192.0.2.7:5555", IO_TIMEOUT);
    assert_eq!(send(&server, b"hello\n"), b"");
    expect_warnings(&server, 1, "no PROXY protocol header");
    assert_eq!(
        server.metric("echo_server_proxy_header_rejections_total"),
        1.0
    );
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait(IO_TIMEOUT).code(),
        Some(0),
        "{}",
        server.stderr()
    );
}
