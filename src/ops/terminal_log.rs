//! The terminal (operator) log: slog -> slog-term or slog-json -> slog-async.
//!
//! Built once in `main` and passed down; every part of the server logs
//! through loggers with structured keys. The terminal log must never hold
//! up the service: if whatever reads stderr stalls (a paused journald, a
//! full pipe), records queue in slog-async's channel, and once it is full
//! new records are dropped, not waited for. Each drop is counted in
//! [`RECORDS_DROPPED`] (the same counter the summary and `/metrics`
//! show), and once records flow again one `warn` record says how many were
//! lost. The audit log, the product, is separate and never dropped.
//!
//! The returned [`AsyncGuard`] must live until the
//! server has finished, so the last records reach stderr.

use clap::ValueEnum;
use prometheus_client::metrics::counter::Counter;
use slog::{o, Drain, Level, LevelFilter, Logger, OwnedKVList, Record};
use slog_async::{AsyncCore, AsyncGuard};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

/// Terminal log records dropped because stderr could not keep up, in this
/// process (stderr is one per process, so the count is too).
pub static RECORDS_DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Records buffered between the server's threads and the writer thread.
const CHANNEL_SIZE: usize = 8192;

/// The least severe level that is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogLevel {
    /// Only failures that stop something from working.
    Error,
    /// Also problems the server works around (timeouts, accept errors).
    Warn,
    /// Also start-up and shutdown records, with the summary.
    #[default]
    Info,
    /// Also one record per request.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The matching slog level.
    pub fn to_slog(self) -> Level {
        match self {
            LogLevel::Error => Level::Error,
            LogLevel::Warn => Level::Warning,
            LogLevel::Info => Level::Info,
            LogLevel::Debug => Level::Debug,
            LogLevel::Trace => Level::Trace,
        }
    }
}

/// How records are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (slog-term), coloured on a terminal.
    #[default]
    Term,
    /// One JSON object per line (slog-json), for log shippers.
    Json,
}

/// Builds the root logger writing to stderr; keep the guard alive until the
/// last record has been logged, then drop it to flush.
pub fn build(level: LogLevel, format: LogFormat) -> (Logger, AsyncGuard) {
    let (drain, guard) = match format {
        LogFormat::Term => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            spawn_writer(slog_term::FullFormat::new(decorator).build().fuse())
        }
        LogFormat::Json => {
            let json = slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .build();
            spawn_writer(json.fuse())
        }
    };
    let drain = LevelFilter::new(drain, level.to_slog()).fuse();
    (Logger::root(drain, o!()), guard)
}

/// Puts `drain` behind slog-async's writer thread, dropping and counting
/// records when its channel is full.
fn spawn_writer<D>(drain: D) -> (Dropping, AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let (core, guard) = AsyncCore::custom(drain)
        .chan_size(CHANNEL_SIZE)
        .blocking(false)
        .thread_name("log-writer".into())
        .build_with_guard();
    (
        Dropping {
            core,
            unreported: AtomicU64::new(0),
        },
        guard,
    )
}

/// slog-async's core with an overflow policy of our own: never block,
/// count every dropped record, report the count once records flow again.
struct Dropping {
    /// The channel to the writer thread.
    core: AsyncCore,
    /// Records dropped since the last report.
    unreported: AtomicU64,
}

impl Drain for Dropping {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let pending = self.unreported.load(Ordering::Relaxed);
        if pending > 0 {
            let report = self.core.log(
                &slog::record!(
                    Level::Warning,
                    "",
                    &format_args!("terminal log records were dropped: stderr could not keep up"),
                    slog::b!("dropped" => pending)
                ),
                values,
            );
            if report.is_ok() {
                self.unreported.fetch_sub(pending, Ordering::Relaxed);
            }
        }
        // Full channel, or (only while exiting) a writer that is gone.
        if self.core.log(record, values).is_err() {
            RECORDS_DROPPED.inc();
            self.unreported.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A duration rounded to milliseconds, printed like `1h 2m 3s 45ms`.
pub fn rounded(d: std::time::Duration) -> humantime::FormattedDuration {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(std::time::Duration::from_millis(millis))
}

/// A logger that discards everything, for tests and library users who do
/// not want records.
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// Sends panic messages to `log` instead of bare stderr, so a contained
/// panic in one connection shows up as a structured error record.
pub fn route_panics(log: &Logger) {
    let log = log.clone();
    std::panic::set_hook(Box::new(move |info| {
        let message = crate::net::panic_message(info.payload());
        let thread = std::thread::current();
        slog::error!(log, "panic";
            "thread" => thread.name().unwrap_or("unnamed"),
            "at" => info.location().map(ToString::to_string).unwrap_or_default(),
            "message" => message);
    }));
}
