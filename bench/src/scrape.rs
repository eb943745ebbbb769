//! Reading a prime-server's admin endpoint (`--admin-listen`) from the
//! outside: one `GET` over loopback and one sample out of the Prometheus
//! text it returns. The bench uses it to wait for a state (every stalled
//! client held, the heavy lane full) and to count what a run caused
//! (`fdatasync` calls, seals).
//!
//! Hand-written on `std::net` rather than an HTTP client crate: the
//! request is one fixed `GET` to our own endpoint on loopback, which
//! answers one request per connection and closes, so reading to EOF is the
//! whole protocol; a client crate would bring more code than this.

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest a scrape may take (the endpoint answers in microseconds; it
/// gives its own clients 2 s).
const TIMEOUT: Duration = Duration::from_secs(5);

/// The body of `GET path` on `addr`, which must answer 200.
///
/// # Errors
///
/// Connecting, writing or reading failed or timed out, or the answer was
/// not a 200.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("cannot connect to http://{addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .with_context(|| format!("cannot send to http://{addr}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("cannot read http://{addr}{path}"))?;
    let response = String::from_utf8(response).context("the answer is not UTF-8")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the answer is not HTTP")?;
    let status = head.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        bail!(
            "http://{addr}{path} answered {:?}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_owned())
}

/// The value of the sample `series` (its exact name, labels included) in a
/// Prometheus or OpenMetrics text exposition.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const EXPOSITION: &str = "# HELP prime_server_audit_seals Seals written\n\
        # TYPE prime_server_audit_seals counter\n\
        prime_server_audit_seals_total 12\n\
        prime_server_audit_sync_duration_seconds_count 3\n\
        prime_server_audit_sync_duration_seconds_bucket{le=\"0.00001\"} 0\n\
        prime_server_requests_total{verdict=\"prime\"} 7.5\n\
        # EOF\n";

    #[test]
    fn samples_are_found_by_exact_series() {
        assert_eq!(
            sample(EXPOSITION, "prime_server_audit_seals_total"),
            Some(12.0)
        );
        assert_eq!(
            sample(EXPOSITION, "prime_server_requests_total{verdict=\"prime\"}"),
            Some(7.5)
        );
        assert_eq!(
            sample(EXPOSITION, "prime_server_audit_sync_duration_seconds_count"),
            Some(3.0)
        );
        // A prefix of a series is not the series.
        assert_eq!(sample(EXPOSITION, "prime_server_audit_seals"), None);
        assert_eq!(sample(EXPOSITION, "prime_server_requests_total"), None);
    }

    /// Serves one connection with `answer`, returning what it was sent.
    fn one_shot(answer: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 256];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "EOF before the end of the request head");
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer).unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, server)
    }

    #[test]
    fn get_returns_the_body_of_a_200() {
        let (addr, server) = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nbody\r\n");
        assert_eq!(get(addr, "/metrics").unwrap(), "body\r\n");
        assert!(server
            .join()
            .unwrap()
            .starts_with("GET /metrics HTTP/1.0\r\n"));
    }

    #[test]
    fn get_refuses_other_statuses() {
        let (addr, server) = one_shot(b"HTTP/1.1 503 Service Unavailable\r\n\r\nstopping\n");
        let error = get(addr, "/readyz").unwrap_err().to_string();
        assert!(error.contains("503"), "{error}");
        server.join().unwrap();
    }
}
