//! The listening socket: binding it (backlog, `SO_REUSEADDR`, IPv6 only
//! for `[::]`), `TCP_DEFER_ACCEPT`, and fitting `--max-connections` under
//! the open-files limit.

use slog::{info, warn, Logger};
use socket2::{Domain, Socket, Type};
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;
use thiserror::Error;

/// Listen backlog asked of the kernel (capped by `net.core.somaxconn`).
pub const BACKLOG: i32 = 1024;
/// Descriptors kept free for everything that is not a client connection
/// (listener, audit log, epoll, pipes, the admin endpoint, ...), at most;
/// under a tiny limit an eighth of it. Should the estimate be short,
/// `accept()` fails with EMFILE and backs off, as for any accept error.
const RESERVED_FDS: u64 = 64;

/// Why the server could not listen.
#[derive(Debug, Error)]
pub enum BindError {
    /// Something already listens on the address.
    #[error(
        "cannot listen on {addr}: the address is already in use (is another server running there?)"
    )]
    InUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Any other failure: permissions, an address not on this machine, ...
    #[error("cannot listen on {addr}: {source}")]
    Other {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
}

/// Binds a listening socket with [`BACKLOG`] and `SO_REUSEADDR` (so a
/// restart does not wait out `TIME_WAIT`). Port 0 picks a free port.
///
/// # Errors
///
/// [`BindError::InUse`] when the address is taken, [`BindError::Other`]
/// for anything else.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let attempt = || -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            // `[::]` means IPv6 only, as with std; not a surprise dual stack.
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        Ok(socket.into())
    };
    attempt().map_err(|source| match source.kind() {
        ErrorKind::AddrInUse => BindError::InUse { addr },
        _ => BindError::Other { addr, source },
    })
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Go and nginx do)
/// and returns the connection cap that fits under it, warning if it had to
/// be lowered.
pub fn fit_connection_cap(wanted: usize, log: &Logger) -> usize {
    let limit = match raise_nofile_limit() {
        Ok(limit) => limit,
        Err(e) => {
            warn!(log, "cannot read or raise the open-files limit"; "error" => %e);
            return wanted;
        }
    };
    let reserved = RESERVED_FDS.min(limit / 8);
    let fits = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    if wanted > fits {
        warn!(log, "--max-connections lowered to fit the open-files limit";
            "asked" => wanted, "now" => fits.max(1), "open_files_limit" => limit);
        return fits.max(1);
    }
    info!(log, "open-files limit"; "limit" => limit, "max_connections" => wanted);
    wanted
}

/// Raises the soft open-files limit to the hard one; returns the new soft
/// limit.
fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

/// Sets `TCP_DEFER_ACCEPT` on a listening socket: the kernel completes the
/// handshake but hands the connection to `accept()` only when data arrives,
/// or once `wait` has passed (then the request deadline applies as usual).
/// Public so the bench's floor server sets it exactly as the server does.
///
/// # Errors
///
/// The `setsockopt` failed, or the platform has no such option.
#[cfg(target_os = "linux")]
pub fn set_defer_accept(listener: &TcpListener, wait: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let seconds = libc::c_int::try_from(wait.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
    let len =
        libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).map_err(io::Error::other)?;
    // SAFETY: a valid socket descriptor borrowed from `listener`, and a
    // pointer and length describing a live c_int, as setsockopt(2) expects.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&seconds).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere there is no such option; connections reach the room first.
#[cfg(not(target_os = "linux"))]
pub fn set_defer_accept(_listener: &TcpListener, _wait: Duration) -> io::Result<()> {
    Err(io::Error::new(
        ErrorKind::Unsupported,
        "TCP_DEFER_ACCEPT is Linux-only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_reports_an_address_in_use() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("already in use"));
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let soft = raise_nofile_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_nofile_limit.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) },
            0
        );
        assert_eq!(soft, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }

    #[test]
    fn the_connection_cap_is_lowered_to_fit() {
        let soft = raise_nofile_limit().unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let huge = usize::try_from(soft)
            .unwrap_or(usize::MAX)
            .saturating_add(1_000);
        let fitted = fit_connection_cap(huge, &log);
        assert_eq!(
            u64::try_from(fitted).unwrap(),
            soft - RESERVED_FDS.min(soft / 8)
        );
        assert_eq!(fit_connection_cap(10, &log), 10);
    }
}
