//! HAProxy as `deploy/haproxy.cfg` ships it, for the scale-out test
//! (`tests/scale_out.rs`) and for prime-bench's HAProxy table
//! (`bench/src/haproxy.rs`): one harness, so the deployment the bench
//! measures is the one the test checks. The configuration is the shipped
//! file with only its addresses and connection limit changed; HAProxy runs
//! in the foreground on a listening socket passed as descriptor 3
//! (`bind fd@3`), so the caller knows the frontend's ephemeral port before
//! HAProxy starts. [`find_tool`](crate::tools::find_tool) finds `haproxy`.

use anyhow::bail;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The backend `deploy/haproxy.cfg` names (the runtime API addresses its
/// servers through it).
pub const BACKEND: &str = "prime_servers";
/// The descriptor HAProxy finds its listening socket on (`bind fd@3`).
const LISTEN_FD: i32 = 3;

/// `shipped` (the text of `deploy/haproxy.cfg`) with only its addresses
/// changed: the stats socket at `socket`, the frontend on the inherited
/// descriptor 3, one `server` line per instance (name, service address,
/// and admin address for the `/readyz` check), and `maxconn` set to
/// `maxconn` (the shipped 20000 needs an open-files limit of about 40,000,
/// more than containers allow). Every other line (timeouts, retries,
/// balance, PROXY v2, checks, logging) is the shipped one.
///
/// # Errors
///
/// The shipped file no longer has exactly one `stats socket`, `maxconn`
/// and `bind` line, or has no `server` line, or lost the backend or
/// `send-proxy-v2`.
pub fn config(
    shipped: &str,
    socket: &Path,
    maxconn: u32,
    servers: &[(&str, SocketAddr, SocketAddr)],
) -> anyhow::Result<String> {
    let mut out = String::new();
    let (mut stats, mut limit, mut bind, mut server_lines) = (0, 0, 0, 0);
    for line in shipped.lines() {
        let code = line.trim_start();
        if code.starts_with("stats socket ") {
            stats += 1;
            out.push_str(&format!(
                "    stats socket {} mode 600 level admin\n",
                socket.display()
            ));
        } else if code.starts_with("maxconn ") {
            limit += 1;
            out.push_str(&format!("    maxconn {maxconn}\n"));
        } else if code.starts_with("bind ") {
            bind += 1;
            out.push_str(&format!("    bind fd@{LISTEN_FD}\n"));
        } else if code.starts_with("server ") {
            server_lines += 1;
            if server_lines == 1 {
                for (name, addr, admin) in servers {
                    out.push_str(&format!(
                        "    server {name} {addr} check port {}\n",
                        admin.port()
                    ));
                }
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if (stats, limit, bind) != (1, 1, 1) || server_lines == 0 {
        bail!("deploy/haproxy.cfg changed shape: expected one `stats socket`, `maxconn` and `bind` line and `server` lines");
    }
    if !out.contains(&format!("backend {BACKEND}")) || !out.contains("send-proxy-v2") {
        bail!("deploy/haproxy.cfg no longer has backend {BACKEND} with send-proxy-v2");
    }
    Ok(out)
}

/// Starts `binary` in the foreground (`-db`) on the configuration `cfg`,
/// with `listener` as its frontend (descriptor 3) and its output where
/// `stdout` and `stderr` say. The caller may drop `listener` once this
/// returns: HAProxy holds its own copy.
///
/// # Errors
///
/// The process could not be started.
pub fn spawn(
    binary: &Path,
    cfg: &Path,
    listener: &TcpListener,
    stdout: Stdio,
    stderr: Stdio,
) -> std::io::Result<Child> {
    let fd = listener.as_raw_fd();
    let mut command = Command::new(binary);
    command
        .arg("-db")
        .arg("-f")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: the closure runs in the forked child before exec and calls
    // only dup2/fcntl, which are async-signal-safe; it touches no memory
    // shared with the parent. It puts the listening socket on descriptor 3
    // without close-on-exec, which is how HAProxy's `fd@3` finds it.
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
    command.spawn()
}

/// One runtime API command on HAProxy's stats socket, answered within
/// `timeout`; the answer, or `None` while the socket is not there yet.
fn api(socket: &Path, command: &str, timeout: Duration) -> Option<String> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.write_all(format!("{command}\n").as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The last health-check result of each server of [`BACKEND`] (its name
/// and `check_status`: `L7OK` once `GET /readyz` on its admin port
/// answered 200), from `show stat`; empty while the socket is not there.
pub fn check_statuses(socket: &Path, timeout: Duration) -> Vec<(String, String)> {
    api(socket, "show stat", timeout)
        .map(|csv| statuses_in(&csv))
        .unwrap_or_default()
}

/// The servers' rows (not the backend's own) of [`BACKEND`] in a
/// `show stat` CSV, as (name, check status).
fn statuses_in(csv: &str) -> Vec<(String, String)> {
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
        .filter_map(|f| Some(((*f.get(sv)?).to_owned(), (*f.get(check)?).to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_statuses_are_read_from_show_stat() {
        let csv = "# pxname,svname,qcur,check_status,status\n\
            prime,FRONTEND,,,OPEN\n\
            prime_servers,p1,0,L7OK,UP\n\
            prime_servers,p2,0,L4CON,DOWN\n\
            prime_servers,BACKEND,0,,UP\n\
            other,p9,0,L7OK,UP\n";
        let statuses = statuses_in(csv);
        assert_eq!(
            statuses,
            [("p1".into(), "L7OK".into()), ("p2".into(), "L4CON".into())]
        );
        assert!(statuses_in("").is_empty());
    }
}
