//! HAProxy in front of prime-server instances, as `deploy/haproxy.cfg`
//! ships it: the bench derives its configuration from that file, changing
//! only addresses and the connection limit, and runs HAProxy in the
//! foreground on a listening socket it passes as descriptor 3 (the way
//! `tests/scale_out.rs` does), so what is measured is what is deployed:
//! `mode tcp`, `send-proxy-v2`, `balance leastconn`, `/readyz` checks on
//! the instances' admin ports, and the connection log (to stdout, which the
//! bench discards).

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The backend `deploy/haproxy.cfg` names.
pub const BACKEND: &str = "prime_servers";
/// The descriptor HAProxy finds its listening socket on (`bind fd@3`).
const LISTEN_FD: i32 = 3;
/// Longest HAProxy may take to start and see every instance healthy (its
/// checks run every second and need two successes).
const UP_TIMEOUT: Duration = Duration::from_secs(30);
/// HAProxy's `maxconn`: the shipped 20000 needs an open-files limit of
/// about 40,000, more than containers allow; the bench needs a few dozen.
const MAXCONN: u32 = 1000;

/// `haproxy` on the PATH or in /usr/sbin, /sbin.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file())
}

/// The shipped configuration, `deploy/haproxy.cfg` at the workspace root.
pub fn shipped_config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("haproxy.cfg")
}

/// `shipped` with only its addresses changed: the stats socket at
/// `socket`, the frontend on the inherited descriptor 3, one `server` line
/// per instance (its service address, and its admin port for the
/// `/readyz` check), and `maxconn` lowered to fit the open-files limit.
/// Every other line (timeouts, retries, balance, PROXY v2, checks, logging)
/// is the shipped one.
///
/// # Errors
///
/// The shipped file no longer has the one `stats socket`, `maxconn` and
/// `bind` line and the `server` lines this rewrites.
pub fn config(
    shipped: &str,
    socket: &Path,
    instances: &[(SocketAddr, SocketAddr)],
) -> anyhow::Result<String> {
    let mut out = String::new();
    let (mut stats, mut maxconn, mut bind, mut servers) = (0, 0, 0, 0);
    for line in shipped.lines() {
        let code = line.trim_start();
        if code.starts_with("stats socket ") {
            stats += 1;
            out.push_str(&format!(
                "    stats socket {} mode 600 level admin\n",
                socket.display()
            ));
        } else if code.starts_with("maxconn ") {
            maxconn += 1;
            out.push_str(&format!("    maxconn {MAXCONN}\n"));
        } else if code.starts_with("bind ") {
            bind += 1;
            out.push_str(&format!("    bind fd@{LISTEN_FD}\n"));
        } else if code.starts_with("server ") {
            servers += 1;
            if servers == 1 {
                for (i, (addr, admin)) in instances.iter().enumerate() {
                    out.push_str(&format!(
                        "    server p{} {addr} check port {}\n",
                        i + 1,
                        admin.port()
                    ));
                }
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if (stats, maxconn, bind) != (1, 1, 1) || servers == 0 {
        bail!("deploy/haproxy.cfg changed shape: expected one `stats socket`, `maxconn` and `bind` line and `server` lines");
    }
    if !out.contains(&format!("backend {BACKEND}")) || !out.contains("send-proxy-v2") {
        bail!("deploy/haproxy.cfg no longer has backend {BACKEND} with send-proxy-v2");
    }
    Ok(out)
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
        let fd = listener.as_raw_fd();
        let mut command = Command::new(binary);
        command
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            // The per-connection log (`log stdout`) is discarded.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&messages)?);
        // SAFETY: the closure runs in the forked child before exec and calls
        // only dup2/fcntl, which are async-signal-safe; it touches no memory
        // shared with the parent. It puts the listening socket on
        // descriptor 3 without close-on-exec, where `bind fd@3` finds it.
        unsafe {
            command.pre_exec(move || {
                let rc = if fd == LISTEN_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, LISTEN_FD)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        // HAProxy holds its own copy of the socket now.
        drop(listener);
        let mut haproxy = Haproxy { addr, child };
        let until = Instant::now() + UP_TIMEOUT;
        loop {
            let statuses = check_statuses(&socket);
            if statuses.len() == instances.len() && statuses.iter().all(|s| s == "L7OK") {
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

/// The last check result of each server of the backend, from the runtime
/// API's `show stat` (`L7OK` once `GET /readyz` answered 200); empty while
/// the socket is not there yet.
fn check_statuses(socket: &Path) -> Vec<String> {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return Vec::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"show stat\n").is_err() {
        return Vec::new();
    }
    let mut answer = String::new();
    if stream.read_to_string(&mut answer).is_err() {
        return Vec::new();
    }
    statuses_in(&answer)
}

/// The `check_status` of every server (not the backend's own row) of
/// [`BACKEND`] in a `show stat` CSV.
fn statuses_in(csv: &str) -> Vec<String> {
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default();
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let col = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(check)) = (col("pxname"), col("svname"), col("check_status"))
    else {
        return Vec::new();
    };
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&BACKEND))
        .filter(|f| !matches!(f.get(sv), Some(&"BACKEND" | &"FRONTEND")))
        .filter_map(|f| Some((*f.get(check)?).to_owned()))
        .collect()
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

    #[test]
    fn check_statuses_are_read_from_show_stat() {
        let csv = "# pxname,svname,qcur,check_status,status\n\
            prime,FRONTEND,,,OPEN\n\
            prime_servers,p1,0,L7OK,UP\n\
            prime_servers,p2,0,L4CON,DOWN\n\
            prime_servers,BACKEND,0,,UP\n\
            other,p9,0,L7OK,UP\n";
        assert_eq!(statuses_in(csv), ["L7OK", "L4CON"]);
        assert!(statuses_in("").is_empty());
    }
}
