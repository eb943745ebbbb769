//! The client side of a test: connecting (from any loopback address),
//! asking one line, raw exchanges, reading until the server closes, the
//! replies the server owes, bounded waits, many clients asking while
//! something else happens, and `GET` on an admin endpoint.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown as Half, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest any single test exchange may take before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends `request` as is, half-closes, and returns everything the server
/// sends until it closes.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(request).expect("write request");
    let _ = stream.shutdown(Half::Write);
    read_to_close(&mut stream)
}

/// Sends one line (a newline is added) the way the seed client does, without
/// half-closing, and returns the whole reply.
pub fn ask_line(addr: SocketAddr, line: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    let mut request = line.to_vec();
    request.push(b'\n');
    stream.write_all(&request).expect("write request");
    read_to_close(&mut stream)
}

/// The reply to one line, as a string such as `"T\n"`.
pub fn ask(addr: SocketAddr, line: &str) -> String {
    String::from_utf8_lossy(&ask_line(addr, line.as_bytes())).into_owned()
}

/// A client socket with bounded reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to test server");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// A client socket that has sent `bytes` and stays open, e.g. `b"1"` for a
/// client stalled mid-line or `b"17\n"` for a request awaiting its reply.
pub fn connect_sending(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = connect(addr);
    stream.write_all(bytes).expect("write");
    stream
}

/// Reads until the server closes (or resets) the connection.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => reply,
        Err(e) if closed_by_server(&e) => reply,
        Err(e) => panic!("reading the reply failed: {e}"),
    }
}

/// Polls `condition` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// Whether `e` means the server refused, reset or closed the connection:
/// what a client may see from a stopping, killed or failing server. Any
/// other error (a timeout, above all) is a fault the test must not hide.
pub fn closed_by_server(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{
        BrokenPipe, ConnectionAborted, ConnectionRefused, ConnectionReset, UnexpectedEof,
    };
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// Sends `n` on a fresh connection and returns the reply letter if a
/// complete `T` or `F` arrived; `None` if the server refused the
/// connection or closed (or reset) it without a reply, as it may while it
/// stops or when it cannot log. Anything else fails the test: a torn or
/// wrong reply, and an error that is not the server closing (a timeout
/// means the server hung, not that it declined).
pub fn try_ask(addr: SocketAddr, n: &str) -> Option<String> {
    let fail = |step: &str, e: std::io::Error| -> Option<String> {
        assert!(closed_by_server(&e), "asking {n}: {step} failed: {e}");
        None
    };
    let mut stream = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(stream) => stream,
        Err(e) => return fail("connect", e),
    };
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set a read timeout");
    if let Err(e) = stream.write_all(format!("{n}\n").as_bytes()) {
        return fail("write", e);
    }
    let mut reply = Vec::new();
    if let Err(e) = stream.read_to_end(&mut reply) {
        fail("read", e)?;
    }
    match reply.as_slice() {
        b"T\n" => Some("T".to_owned()),
        b"F\n" => Some("F".to_owned()),
        b"" => None,
        other => panic!("torn or wrong reply {other:?}"),
    }
}

/// Runs `threads` clients asking about distinct numbers, one connection
/// each, while `during` runs (it typically signals the server and waits for
/// it); then stops them and returns `during`'s result and every
/// (number, reply) a client received. Each client stops after 20,000
/// requests at most.
pub fn under_load<R>(
    addr: SocketAddr,
    threads: u64,
    during: impl FnOnce() -> R,
) -> (R, Vec<(String, String)>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..threads)
            .map(|t| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..20_000u64 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let n = (t * 1_000_003 + i).to_string();
                        if let Some(reply) = try_ask(addr, &n) {
                            got.push((n, reply));
                        }
                    }
                    got
                })
            })
            .collect();
        // Stop the clients even if `during` panics, so a failed assertion
        // fails the test instead of waiting for 20,000 requests each.
        struct StopClients<'a>(&'a AtomicBool);
        impl Drop for StopClients<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let guard = StopClients(&stop);
        let result = during();
        drop(guard);
        let received = clients
            .into_iter()
            .flat_map(|c| c.join().expect("client thread"))
            .collect();
        (result, received)
    })
}

/// The reply the server owes for the integer `n`: `T\n` or `F\n`.
pub fn reply_for(n: u64) -> &'static str {
    if prime_server::prime::is_prime_u64(n) {
        "T\n"
    } else {
        "F\n"
    }
}

/// An address nothing listens on (bound, then released).
pub fn unused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Connects to `addr` from `source` (any address of 127.0.0.0/8 works on
/// loopback), so one test can be several clients, with bounded reads and
/// writes. Fallible, for load generators that count failures.
pub fn try_connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// `GET path` over HTTP/1.1 at `addr`: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = connect(addr);
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .expect("send request");
    let response = String::from_utf8(read_to_close(&mut stream)).expect("UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The value of the sample `name` (exact series, labels included) in a
/// Prometheus text exposition.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        (series == name).then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_found_by_its_exact_series() {
        let exposition = "# TYPE prime_server_answers counter\n\
            prime_server_answers_total{code=\"T\"} 3\n\
            prime_server_answers_total{code=\"F\"} 4.5\n\
            prime_server_answers_created 1.7e9\n";
        assert_eq!(
            metric(exposition, "prime_server_answers_total{code=\"F\"}"),
            Some(4.5)
        );
        assert_eq!(metric(exposition, "prime_server_answers_total"), None);
    }

    #[test]
    fn replies_owed_follow_primality() {
        assert_eq!(
            [0, 1, 2, 17, 561].map(reply_for),
            ["F\n", "F\n", "T\n", "T\n", "F\n"]
        );
    }
}
