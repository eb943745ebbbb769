//! What the server binaries share from start to exit: take the listening
//! socket systemd passed (see [`inherited_listener`]) or bind one, open the
//! service, serve the admin
//! endpoint, wire the signals (SIGINT/SIGTERM stop, SIGHUP reopens logs),
//! talk to systemd, serve, drain the logger, and turn an error into one
//! sentence on stderr with exit status 1.

use crate::net::bind;
use crate::net::Shutdown;
use crate::ops::admin::{Admin, AdminView};
use crate::ops::app::{Server, Service};
use crate::ops::flags::CommonArgs;
use crate::ops::{signals, systemd, terminal_log};
use anyhow::Context;
use slog::{info, Logger};
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

/// Runs a server binary: `open` builds the service (audit log and all)
/// once the logger exists; the rest is shared.
///
/// The listening socket is the one systemd passed through socket activation
/// when there is one (`listen` is then ignored), else a fresh bind of
/// `listen`.
///
/// Exit status: 0 after a graceful stop, 1 (with `program: reason` on
/// stderr) when it cannot start or serve.
pub fn run_server<S: Service>(
    listen: SocketAddr,
    common: &CommonArgs,
    open: impl FnOnce(&Logger) -> anyhow::Result<Server<S>>,
) -> ExitCode {
    let program = S::NAME;
    // First, before the logger starts its thread: reading the activation
    // variables also removes them from the environment.
    let inherited = inherited_listener();
    let (log, guard) = terminal_log::build(common.log_level, common.log_format);
    terminal_log::route_panics(&log);
    let result = (|| {
        let stop = Shutdown::new();
        let listener = match inherited? {
            Some(listener) => {
                info!(log, "using the listening socket passed by systemd";
                    "address" => %listener.local_addr()?, "ignored_listen" => %listen);
                stop.share_listener();
                listener
            }
            None => bind(listen)?,
        };
        let service = open(&log)?;
        let admin = match common.admin_listen {
            Some(addr) => {
                let listener = bind(addr).context("admin endpoint (--admin-listen)")?;
                let view = AdminView {
                    registry: service.registry(),
                    health: service.health(),
                };
                let admin = Admin::spawn(listener, view, &log)
                    .context("cannot start the admin endpoint")?;
                info!(log, "admin endpoint listening"; "address" => %admin.addr());
                Some(admin)
            }
            None => None,
        };
        let signals =
            signals::install_signal_handlers(stop.clone(), program, &log, service.reloader())?;
        stop.on_request(Box::new(systemd::stopping));
        let watchdog = systemd::spawn_watchdog(service.health(), &log);
        systemd::ready();
        let served = service
            .run(listener, stop)
            .map(drop)
            .map_err(anyhow::Error::from);
        signals.close();
        drop(admin);
        if let Some(watchdog) = watchdog {
            let _ = watchdog.join();
        }
        served
    })();
    // Dropping the guard waits until every record has reached stderr.
    drop(log);
    drop(guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The TCP listening socket passed by systemd socket activation (`LISTEN_FDS`
/// set, `LISTEN_PID` this process), or `None` when there is none, through
/// the `listenfd` crate.
///
/// With an inherited socket a restart loses no connection: systemd keeps the
/// socket open while the server stops and starts, so clients that connect
/// meanwhile wait in its backlog for the next process instead of being
/// refused (see `deploy/prime-server.socket`). The previous process may have
/// left the socket non-blocking (the shutdown drain sets that flag, and it
/// is shared by every copy of the socket), so it is made blocking again here.
///
/// # Errors
///
/// The first passed descriptor is not a TCP listening socket, or its mode
/// cannot be set.
pub fn inherited_listener() -> anyhow::Result<Option<TcpListener>> {
    let mut passed = listenfd::ListenFd::from_env();
    let Some(listener) = passed
        .take_tcp_listener(0)
        .context("the socket passed by systemd (LISTEN_FDS) is not a TCP socket")?
    else {
        return Ok(None);
    };
    listener
        .set_nonblocking(false)
        .context("cannot make the socket passed by systemd blocking")?;
    Ok(Some(listener))
}
