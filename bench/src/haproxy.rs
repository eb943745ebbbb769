//! HAProxy in front of prime-server instances, as `deploy/haproxy.cfg`
//! ships it: the bench derives its configuration from that file, changing
//! only addresses and the connection limit, and runs HAProxy in the
//! foreground on a listening socket it passes as descriptor 3 (the way
//! `tests/scale_out.rs` does), so what is measured is what is deployed:
//! `mode tcp`, `send-proxy-v2`, `balance leastconn`, `/readyz` checks on
//! the instances' admin ports, and the connection log (to stdout, which the
//! bench discards).

use anyhow::{bail, Context};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

// The harness the scale-out test uses too: the configuration derived from
// the shipped file, the start on descriptor 3, the runtime API.
use test_support::haproxy as harness;

/// Longest HAProxy may take to start and see every instance healthy (its
/// checks run every second and need two successes).
const UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one runtime API command may take.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// HAProxy's `maxconn`: the shipped 20000 needs an open-files limit of
/// about 40,000, more than containers allow; the bench needs a few dozen.
const MAXCONN: u32 = 1000;

/// `haproxy` on the PATH or in /usr/sbin, /sbin.
pub fn find() -> Option<PathBuf> {
    test_support::tools::find_tool("haproxy")
}

/// The shipped configuration, `deploy/haproxy.cfg` at the workspace root.
pub fn shipped_config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("haproxy.cfg")
}

/// `shipped` with only its addresses changed, one `server` line per
/// instance (`p1`, `p2`, ...: service address, admin port) and `maxconn`
/// lowered to fit the open-files limit.
///
/// # Errors
///
/// The shipped file changed shape (see the harness's `config`).
pub fn config(
    shipped: &str,
    socket: &Path,
    instances: &[(SocketAddr, SocketAddr)],
) -> anyhow::Result<String> {
    let names: Vec<String> = (1..=instances.len()).map(|i| format!("p{i}")).collect();
    let servers: Vec<(&str, SocketAddr, SocketAddr)> = names
        .iter()
        .zip(instances)
        .map(|(name, (addr, admin))| (name.as_str(), *addr, *admin))
        .collect();
    harness::config(shipped, socket, MAXCONN, &servers)
}

/// A running HAProxy; dropping it stops it.
#[derive(Debug)]
pub struct Haproxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The process.
    child: Child,
}

impl Haproxy {
    /// Starts `binary` in front of `instances` (service and admin address
    /// of each, all started with `--proxy-protocol --admin-listen`), its
    /// files in `dir`, and waits until every instance passes its check.
    ///
    /// # Errors
    ///
    /// The configuration could not be derived or written, HAProxy did not
    /// start, or an instance did not become healthy in time (the error
    /// quotes HAProxy's messages).
    pub fn start(
        binary: &Path,
        dir: &Path,
        instances: &[(SocketAddr, SocketAddr)],
    ) -> anyhow::Result<Haproxy> {
        let shipped_path = shipped_config_path();
        let shipped = std::fs::read_to_string(&shipped_path)
            .with_context(|| format!("cannot read {}", shipped_path.display()))?;
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("haproxy.sock");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, config(&shipped, &socket, instances)?)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let messages = dir.join("haproxy.stderr");
        // The per-connection log (`log stdout`) is discarded.
        let stderr = std::fs::File::create(&messages)?;
        let child = harness::spawn(binary, &cfg, &listener, Stdio::null(), stderr.into())
            .with_context(|| format!("cannot run {}", binary.display()))?;
        // HAProxy holds its own copy of the socket now.
        drop(listener);
        let mut haproxy = Haproxy { addr, child };
        let until = Instant::now() + UP_TIMEOUT;
        loop {
            let statuses = harness::check_statuses(&socket, API_TIMEOUT);
            if statuses.len() == instances.len() && statuses.iter().all(|(_, s)| s == "L7OK") {
                return Ok(haproxy);
            }
            let exited = haproxy.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > until {
                let said = std::fs::read_to_string(&messages).unwrap_or_default();
                bail!(
                    "HAProxy {}: checks {statuses:?}; it said: {}",
                    exited.map_or(
                        "did not see every instance healthy in time".to_owned(),
                        |s| { format!("exited ({s})") }
                    ),
                    said.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// CPU time HAProxy has used so far (all its threads).
    pub fn cpu(&self) -> Option<Duration> {
        crate::servers::cpu_of(self.child.id())
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_the_shipped_one_with_our_addresses() {
        let shipped = std::fs::read_to_string(shipped_config_path()).unwrap();
        let instances: Vec<(SocketAddr, SocketAddr)> = vec![
            (
                "127.0.0.1:4001".parse().unwrap(),
                "127.0.0.1:5001".parse().unwrap(),
            ),
            (
                "127.0.0.1:4002".parse().unwrap(),
                "127.0.0.1:5002".parse().unwrap(),
            ),
        ];
        let cfg = config(&shipped, Path::new("/x/h.sock"), &instances).unwrap();
        assert!(cfg.contains("    server p1 127.0.0.1:4001 check port 5001\n"));
        assert!(cfg.contains("    server p2 127.0.0.1:4002 check port 5002\n"));
        assert_eq!(cfg.matches("\n    server ").count(), 2, "{cfg}");
        assert!(cfg.contains("    bind fd@3\n"));
        assert!(cfg.contains("stats socket /x/h.sock mode 600 level admin"));
        assert!(cfg.contains(&format!("    maxconn {MAXCONN}\n")));
        // Everything else is kept as shipped.
        for line in shipped.lines().filter(|l| {
            let code = l.trim_start();
            !["stats socket ", "maxconn ", "bind ", "server "]
                .iter()
                .any(|p| code.starts_with(p))
        }) {
            assert!(cfg.contains(line), "lost {line:?}");
        }
        assert!(config("global\n", Path::new("/s"), &instances).is_err());
    }
}
