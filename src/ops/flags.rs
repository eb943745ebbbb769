//! Command-line options of the binaries (clap, each flag with an env var),
//! turned into the library's plain option structs.

use crate::audit::{SealOptions, SyncPolicy};
use crate::net::{cores, default_workers, Limits, Rate, ServerOptions, TrustedProxies};
use crate::ops::terminal_log::{LogFormat, LogLevel};
use crate::prime::{Config, PrimeOptions};
use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Longest request, write or shutdown timeout accepted: an hour. Every
/// duration is bounded so that no deadline arithmetic can overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest idle timeout accepted: a day.
const MAX_IDLE: Duration = Duration::from_secs(24 * 3600);
/// Most worker or heavy-lane threads accepted.
const MAX_THREADS: u64 = 1024;
/// Most connections accepted for `--max-connections`.
const MAX_CONNECTIONS: u64 = 1_000_000;
/// Longest line accepted for `--max-line-bytes`: 16 MiB.
const MAX_LINE_BYTES: u64 = 16 << 20;

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
    /// Address to listen on, IPv4 or IPv6 (`--listen`).
    #[arg(long, env = "PRIME_SERVER_LISTEN", default_value = "127.0.0.1:8809", value_parser = parse_addr,
          help = "Address to listen on, IPv4 or IPv6 (e.g. [::1]:8809); port 0 picks a free port")]
    pub listen: SocketAddr,

    /// File the audit trail is appended to (its directory is created if missing)
    #[arg(
        long,
        env = "PRIME_SERVER_AUDIT_LOG",
        default_value = "logs/prime_server.log"
    )]
    pub audit_log: PathBuf,

    /// How durable an answer's audit line is before the reply: none (in the kernel: survives kill -9), interval:DUR (fdatasync every DUR), always (fdatasync before each reply, shared by concurrent requests)
    #[arg(long, env = "PRIME_SERVER_AUDIT_SYNC", default_value = "none")]
    pub audit_sync: SyncPolicy,

    /// Seal the audit log with this sealing state (made by `prime-audit keygen --state PATH`): forward-secure seal records go to AUDIT_LOG.seal [default: off]
    #[arg(long, env = "PRIME_SERVER_AUDIT_SEAL")]
    pub audit_seal: Option<PathBuf>,

    /// With --audit-seal, how often new lines are sealed (10ms to 1h) [default: the key epoch chosen by `prime-audit keygen --seal-interval`]
    #[arg(long, env = "PRIME_SERVER_SEAL_INTERVAL", value_parser = parse_seal_interval)]
    pub seal_interval: Option<Duration>,

    /// With --audit-seal, the longest time without a seal while no lines are written: a heartbeat seal comes at least this often (10ms to 1h, at least the seal interval)
    #[arg(long, env = "PRIME_SERVER_SEAL_HEARTBEAT", default_value = "1m", value_parser = parse_seal_interval)]
    pub seal_heartbeat: Duration,

    /// With --audit-seal, also send every seal record to this syslog collector (HOST:PORT, RFC 5424 over TCP, octet-counted) so a copy lives off this machine [default: off]
    #[arg(long, env = "PRIME_SERVER_SEAL_SYSLOG", value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub seal_syslog: Option<String>,

    /// With --audit-seal, answer no request while sealing fails (as when the audit log cannot be written) instead of answering unsealed
    #[arg(long, env = "PRIME_SERVER_SEAL_FAIL_CLOSED")]
    pub seal_fail_closed: bool,

    /// Heavy-lane threads: big-number (above 2^128) tests run at once, at most [default: number of cores]
    #[arg(long, env = "PRIME_SERVER_BIG_TESTS", value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_THREADS))]
    pub big_tests: Option<usize>,

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
    /// Worker threads; they never wait on a client or a big number, so one per core suffices [default: one per core; eight per core with --audit-sync always]
    #[arg(long, env = "PRIME_SERVER_WORKERS", value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_THREADS))]
    pub workers: Option<usize>,

    /// Connections open at once, at most (waiting, queued and in service); then the kernel backlog holds new ones
    #[arg(long, env = "PRIME_SERVER_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_CONNECTIONS))]
    pub max_connections: usize,

    /// Connections one client address may hold open [default: no cap]
    #[arg(long, env = "PRIME_SERVER_MAX_CONNECTIONS_PER_IP",
          value_parser = RangedU64ValueParser::<u32>::new().range(1..=MAX_CONNECTIONS))]
    pub max_connections_per_ip: Option<u32>,

    /// Lines per second one client address may have answered, e.g. 100/s; past it the server stops reading from it until tokens return [default: no limit]
    #[arg(long, env = "PRIME_SERVER_MAX_RATE_PER_IP")]
    pub max_rate_per_ip: Option<Rate>,

    /// Time from accept to the end of the request line; with several lines per connection, from a line's first byte (e.g. 5s, 500ms; at most 1h)
    #[arg(long, env = "PRIME_SERVER_REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_timeout)]
    pub request_timeout: Duration,

    /// Close a connection that carries several lines (--keep-alive, echo-server) after this long without a new line (at most 24h)
    #[arg(long, env = "PRIME_SERVER_IDLE_TIMEOUT", default_value = "10s", value_parser = parse_idle_timeout)]
    pub idle_timeout: Duration,

    /// Longest a client may take to read its replies (at most 1h)
    #[arg(long, env = "PRIME_SERVER_WRITE_TIMEOUT", default_value = "5s", value_parser = parse_timeout)]
    pub write_timeout: Duration,

    /// Longest a graceful stop may take; then the remaining connections are closed (at most 1h)
    #[arg(long, env = "PRIME_SERVER_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub shutdown_timeout: Duration,

    /// Longest request line in bytes; a longer one gets E and the connection is closed (at most 16 MiB)
    #[arg(long, env = "PRIME_SERVER_MAX_LINE_BYTES", default_value_t = 65536,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_LINE_BYTES))]
    pub max_line_bytes: usize,

    /// Hand connections over as soon as they are accepted, even before
    /// any data arrives (Linux TCP_DEFER_ACCEPT is on by default)
    #[arg(long, env = "PRIME_SERVER_NO_DEFER_ACCEPT")]
    pub no_defer_accept: bool,

    /// Every connection begins with a PROXY protocol header (v1 or v2, as HAProxy's send-proxy/send-proxy-v2 send it); its client address is the one logged and limited
    #[arg(long, env = "PRIME_SERVER_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,

    /// With --proxy-protocol, the addresses a PROXY header is accepted from (CIDR[,CIDR...])
    #[arg(
        long,
        env = "PRIME_SERVER_TRUSTED_PROXIES",
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub trusted_proxies: TrustedProxies,

    /// Serve /metrics, /livez and /readyz over HTTP on this address (e.g. 127.0.0.1:9809) [default: off]
    #[arg(long, env = "PRIME_SERVER_ADMIN_LISTEN", value_parser = parse_addr)]
    pub admin_listen: Option<SocketAddr>,

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
        let defaults = ServerOptions::default();
        ServerOptions {
            workers: self.workers.unwrap_or_else(default_workers),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_rate_per_ip: self.max_rate_per_ip,
            limits: Limits {
                request_timeout: self.request_timeout,
                idle_timeout: self.idle_timeout,
                write_timeout: self.write_timeout,
                max_line_bytes: self.max_line_bytes,
            },
            defer_accept: !self.no_defer_accept,
            shutdown_timeout: self.shutdown_timeout,
            proxy: self.proxy_protocol.then(|| self.trusted_proxies.clone()),
            ..defaults
        }
    }
}

impl EchoArgs {
    /// The core's options for the echo service, which has no heavy work.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            heavy_threads: 0,
            ..self.common.server_options()
        }
    }
}

impl ServerArgs {
    /// The prime server's configuration these arguments describe.
    pub fn config(&self) -> Config {
        let keep_alive = self.keep_alive.then_some(match self.max_requests_per_conn {
            0 => u64::MAX,
            n => n,
        });
        Config {
            audit_log: self.audit_log.clone(),
            audit_sync: self.audit_sync,
            audit_seal: self.audit_seal.as_ref().map(|state| SealOptions {
                state: state.clone(),
                interval: self.seal_interval,
                heartbeat: self.seal_heartbeat,
                syslog: self.seal_syslog.clone(),
                fail_closed: self.seal_fail_closed,
            }),
            server: ServerOptions {
                heavy_threads: self.big_tests.unwrap_or_else(cores),
                workers: self
                    .common
                    .workers
                    .unwrap_or_else(|| default_workers_for(self.audit_sync)),
                ..self.common.server_options()
            },
            prime: PrimeOptions { keep_alive },
        }
    }
}

/// The default pool size for an audit sync policy: with `always`, eight
/// per core, so that while one group `fdatasync` runs, the next group's
/// lines are being written (group commit needs writers in flight);
/// otherwise [`default_workers`].
pub fn default_workers_for(policy: SyncPolicy) -> usize {
    match policy {
        SyncPolicy::Always => cores() * 8,
        _ => default_workers(),
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

/// Parses a timeout: a duration from 1 ms to an hour.
///
/// # Errors
///
/// A message clap prints, naming the bounds.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    parse_bounded_duration(text, MAX_TIMEOUT)
}

/// Parses an idle timeout: a duration from 1 ms to a day.
///
/// # Errors
///
/// A message clap prints, naming the bounds.
pub fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    parse_bounded_duration(text, MAX_IDLE)
}

/// Parses `HOST:PORT` without resolving it (a collector may be resolved
/// anew at each connection): a non-empty host, a port from 1 to 65535.
///
/// # Errors
///
/// A message clap prints.
pub fn parse_host_port(text: &str) -> Result<String, String> {
    let bad = || format!("not of the form HOST:PORT: {text}");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    Ok(text.to_owned())
}

/// Parses a seal interval (or heartbeat): from 10 ms to an hour.
///
/// # Errors
///
/// A message clap prints, naming the bounds.
pub fn parse_seal_interval(text: &str) -> Result<Duration, String> {
    let d = parse_bounded_duration(text, MAX_TIMEOUT)?;
    if d < Duration::from_millis(10) {
        return Err("must be between 10ms and 1h".into());
    }
    Ok(d)
}

/// Parses a duration of at least 1 ms and at most `max`.
fn parse_bounded_duration(text: &str, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(1) || d > max {
        return Err(format!(
            "must be between 1ms and {}",
            humantime::format_duration(max)
        ));
    }
    Ok(d)
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
        assert_eq!(config.server, ServerOptions::default());
        assert_eq!(config.audit_seal, None);
        let sealed = ServerArgs::try_parse_from([
            "p",
            "--audit-seal",
            "s",
            "--seal-syslog",
            "[::1]:514",
            "--seal-fail-closed",
        ])
        .unwrap()
        .config()
        .audit_seal
        .unwrap();
        assert_eq!(
            (sealed.interval, sealed.heartbeat, sealed.fail_closed),
            (None, Duration::from_secs(60), true)
        );
        assert_eq!(sealed.syslog.as_deref(), Some("[::1]:514"));
    }

    #[test]
    fn zero_workers_and_bad_durations_are_rejected() {
        assert!(ServerArgs::try_parse_from(["p", "--workers", "0"]).is_err());
        assert!(ServerArgs::try_parse_from(["p", "--request-timeout", "0s"]).is_err());
        assert!(ServerArgs::try_parse_from(["p", "--request-timeout", "soon"]).is_err());
        assert!(ServerArgs::try_parse_from(["p", "--listen", "nowhere"]).is_err());
    }

    #[test]
    fn absurd_values_are_rejected_naming_the_flag() {
        for (flag, value) in [
            ("--request-timeout", "300000000000years"),
            ("--request-timeout", "2h"),
            ("--write-timeout", "0ms"),
            ("--shutdown-timeout", "1000000h"),
            ("--idle-timeout", "2days"),
            ("--workers", "100000"),
            ("--big-tests", "0"),
            ("--max-connections", "18446744073709551615"),
            ("--max-connections-per-ip", "0"),
            ("--max-line-bytes", "0"),
            ("--max-line-bytes", "99999999999"),
            ("--max-rate-per-ip", "0/s"),
            ("--trusted-proxies", "10.0.0.0/99"),
            ("--seal-interval", "1ms"),
            ("--seal-heartbeat", "2h"),
            ("--seal-syslog", "collector"),
            ("--seal-syslog", "collector:0"),
            ("--audit-sync", "sometimes"),
        ] {
            let err = ServerArgs::try_parse_from(["p", flag, value]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{flag} {value}");
            assert!(err.to_string().contains(flag), "{flag} {value}: {err}");
        }
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
