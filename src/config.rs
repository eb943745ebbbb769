//! Command-line options of the binaries (clap, each flag with an env var),
//! turned into the library's plain option structs.

use crate::conn::Limits;
use crate::logging::{LogFormat, LogLevel};
use crate::server::{default_workers, ServerOptions};
use crate::service::PrimeOptions;
use crate::Config;
use clap::{Args, Parser};
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// `prime-server`: answers whether each line is a prime number.
#[derive(Debug, Parser)]
#[command(
    name = "prime-server",
    version,
    about = "A TCP service that answers T (prime), F (not prime) or E (not an integer) for each line",
    long_about = "A TCP service that answers T (prime), F (not prime) or E (not an integer) for \
                  each line, parsing integers exactly as Python's int() does, and appends one \
                  audit line per answer. Ctrl-C (SIGINT) or SIGTERM stops it gracefully; a \
                  second signal exits at once with status 130."
)]
pub struct ServerArgs {
    /// Address to listen on, IPv4 or IPv6 (e.g. [::1]:8809); port 0 picks a free port
    #[arg(long, env = "PRIME_SERVER_LISTEN", default_value = "127.0.0.1:8809", value_parser = parse_addr)]
    pub listen: SocketAddr,

    /// File the audit trail is appended to (its directory is created if missing)
    #[arg(
        long,
        env = "PRIME_SERVER_AUDIT_LOG",
        default_value = "logs/prime_server.log"
    )]
    pub audit_log: PathBuf,

    /// Big-number (above 2^64) tests run at once, at most [default: number of cores]
    #[arg(long, env = "PRIME_SERVER_BIG_TESTS")]
    pub big_tests: Option<NonZeroUsize>,

    /// Answer any number of lines per connection instead of one
    #[arg(long, env = "PRIME_SERVER_KEEP_ALIVE")]
    pub keep_alive: bool,

    /// With --keep-alive, close a connection after this many lines (0: no limit)
    #[arg(long, env = "PRIME_SERVER_MAX_REQUESTS_PER_CONN", default_value_t = 0)]
    pub max_requests_per_conn: u64,

    /// Options shared with the other servers of the project.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `echo-server`: replies `GOT:` plus each line it receives.
#[derive(Debug, Parser)]
#[command(
    name = "echo-server",
    version,
    about = "A TCP echo service on prime-server's core: replies GOT: plus each line",
    long_about = "A TCP echo service on prime-server's core: replies GOT: plus each line, \
                  on as many lines per connection as the client sends, until EOF or the idle \
                  timeout. Takes the same server options (and PRIME_SERVER_* variables) as \
                  prime-server. Ctrl-C (SIGINT) or SIGTERM stops it gracefully; a second \
                  signal exits at once with status 130."
)]
pub struct EchoArgs {
    /// Address to listen on, IPv4 or IPv6; port 0 picks a free port
    #[arg(long, env = "ECHO_SERVER_LISTEN", default_value = "127.0.0.1:25000", value_parser = parse_addr)]
    pub listen: SocketAddr,

    /// Options shared with the other servers of the project.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options every server of the project takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Worker threads: connections served at once [default: 8 per core, at least 16]
    #[arg(long, env = "PRIME_SERVER_WORKERS")]
    pub workers: Option<NonZeroUsize>,

    /// Accepted connections allowed to wait for a worker; beyond that the kernel backlog holds them
    #[arg(long, env = "PRIME_SERVER_MAX_PENDING", default_value_t = 256)]
    pub max_pending: usize,

    /// Time from accept to the end of the request line (e.g. 5s, 500ms)
    #[arg(long, env = "PRIME_SERVER_REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Close a connection that carries several lines (--keep-alive, echo-server) after this long without a new line
    #[arg(long, env = "PRIME_SERVER_IDLE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Longest a reply write may block
    #[arg(long, env = "PRIME_SERVER_WRITE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// Longest request line in bytes; a longer one gets E and the connection is closed
    #[arg(long, env = "PRIME_SERVER_MAX_LINE_BYTES", default_value = "65536")]
    pub max_line_bytes: NonZeroUsize,

    /// Hand connections to workers as soon as they are accepted, even before
    /// any data arrives (Linux TCP_DEFER_ACCEPT is on by default)
    #[arg(long, env = "PRIME_SERVER_NO_DEFER_ACCEPT")]
    pub no_defer_accept: bool,

    /// Least severe log level printed on stderr
    #[arg(long, env = "PRIME_SERVER_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log record format on stderr
    #[arg(long, env = "PRIME_SERVER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Term)]
    pub log_format: LogFormat,
}

impl CommonArgs {
    /// The core's options.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            workers: self.workers.map_or_else(default_workers, NonZeroUsize::get),
            max_pending: self.max_pending,
            limits: Limits {
                request_timeout: self.request_timeout,
                idle_timeout: self.idle_timeout,
                write_timeout: self.write_timeout,
                max_line_bytes: self.max_line_bytes.get(),
            },
            defer_accept: !self.no_defer_accept,
        }
    }
}

impl ServerArgs {
    /// The library configuration these arguments describe.
    pub fn config(&self) -> Config {
        let defaults = PrimeOptions::default();
        let keep_alive = self.keep_alive.then_some(match self.max_requests_per_conn {
            0 => u64::MAX,
            n => n,
        });
        Config {
            audit_log: self.audit_log.clone(),
            server: self.common.server_options(),
            prime: PrimeOptions {
                big_tests: self.big_tests.map_or(defaults.big_tests, NonZeroUsize::get),
                keep_alive,
            },
        }
    }
}

/// Parses `HOST:PORT`: an IP address, or a name resolved to its first address.
///
/// # Errors
///
/// A message clap prints when the address is malformed or does not resolve.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("not an address of the form HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

/// Parses a positive duration such as `5s`, `250ms` or `1m`.
///
/// # Errors
///
/// A message clap prints when the text is not a duration or is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e} (try 5s or 500ms)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let args = ServerArgs::try_parse_from(["prime-server"]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:8809".parse().unwrap());
        let config = args.config();
        assert_eq!(config.audit_log, PathBuf::from("logs/prime_server.log"));
        assert_eq!(config.server.limits, Limits::default());
        assert_eq!(config.prime.keep_alive, None);
        assert!(config.server.workers >= 16);
    }

    #[test]
    fn zero_workers_and_bad_durations_are_rejected() {
        assert!(ServerArgs::try_parse_from(["p", "--workers", "0"]).is_err());
        assert!(ServerArgs::try_parse_from(["p", "--request-timeout", "0s"]).is_err());
        assert!(ServerArgs::try_parse_from(["p", "--request-timeout", "soon"]).is_err());
        assert!(ServerArgs::try_parse_from(["p", "--listen", "nowhere"]).is_err());
    }

    #[test]
    fn ipv6_and_keep_alive() {
        let args = ServerArgs::try_parse_from([
            "p",
            "--listen",
            "[::1]:0",
            "--keep-alive",
            "--max-requests-per-conn",
            "3",
        ])
        .unwrap();
        assert!(args.listen.is_ipv6());
        assert_eq!(args.config().prime.keep_alive, Some(3));
    }
}
