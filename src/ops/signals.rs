//! The signals of a server binary: SIGINT (Ctrl-C, through `ctrlc`) and
//! SIGTERM request a graceful stop, a second one exits at once with status
//! 130; SIGHUP reopens the files the service writes (the audit log).

use crate::net::Shutdown;
use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGTERM};
use slog::{error, info, Logger};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Exit status after a second signal: 128 + SIGINT, as shells report it.
pub const FORCED_EXIT_STATUS: i32 = 130;

/// What SIGHUP does: reopen whatever files the service writes.
pub type Reload = Box<dyn Fn() -> anyhow::Result<()> + Send + Sync>;

/// The signal handlers of a server binary; [`Signals::close`] stops the
/// thread that waits for SIGTERM and SIGHUP.
#[derive(Debug)]
pub struct Signals {
    /// Closes the signal-hook iterator.
    handle: signal_hook::iterator::Handle,
    /// The thread waiting for SIGTERM and SIGHUP.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Signals {
    /// Stops listening for SIGTERM and SIGHUP (SIGINT stays routed).
    pub fn close(mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Routes the signals of a server binary:
/// * SIGINT (Ctrl-C, through `ctrlc`) and SIGTERM (through `signal-hook`):
///   the first requests a graceful stop of `shutdown`; a second one, of
///   either kind, prints a line on stderr and exits the process at once
///   with status [`FORCED_EXIT_STATUS`].
/// * SIGHUP: runs `reload` (reopen the audit log), or logs that there is
///   nothing to reopen.
///
/// # Errors
///
/// A handler could not be installed (for instance, one already was).
pub fn install_signal_handlers(
    shutdown: Shutdown,
    program: &'static str,
    log: &Logger,
    reload: Option<Reload>,
) -> anyhow::Result<Signals> {
    let count = Arc::new(AtomicUsize::new(0));
    let stop = {
        let log = log.clone();
        move || {
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                info!(
                    log,
                    "signal received; finishing accepted connections (signal again to exit now)"
                );
                shutdown.request();
            } else {
                // Deliberately not through the async logger: it may be the
                // very thing that is stuck.
                eprintln!("{program}: second signal received; exiting immediately");
                std::process::exit(FORCED_EXIT_STATUS);
            }
        }
    };
    let on_term = stop.clone();
    ctrlc::set_handler(stop).context("cannot install the SIGINT handler")?;
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP])
        .context("cannot install the SIGTERM/SIGHUP handlers")?;
    let handle = signals.handle();
    let log = log.clone();
    let thread = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGTERM {
                    on_term();
                    continue;
                }
                let Some(reload) = &reload else {
                    info!(log, "SIGHUP received; nothing to reopen");
                    continue;
                };
                crate::ops::systemd::reloading();
                match reload() {
                    Ok(()) => info!(log, "SIGHUP: logs reopened"),
                    Err(e) => error!(log, "SIGHUP: cannot reopen the logs; still writing to the old files";
                        "error" => format!("{e:#}")),
                }
                crate::ops::systemd::reloaded();
            }
        })
        .context("cannot start the signal thread")?;
    Ok(Signals {
        handle,
        thread: Some(thread),
    })
}
