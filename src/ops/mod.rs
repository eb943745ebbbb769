//! **ops**: operations. Everything that turns the layers into the running
//! binaries: the command-line flags, the generic application [`Server`]
//! with its summary, start-up and exit, the admin endpoint (`/metrics`,
//! `/livez`, `/readyz`), the metrics registry, health, systemd, the
//! terminal logger and the signals.
//!
//! It knows every layer and builds them; nothing below imports it.
//!
//! | module | job |
//! | --- | --- |
//! | [`flags`] | the binaries' command-line flags and env vars (bounded) |
//! | `app` | [`Server`]: a [`Service`] on the core, its metrics, health and [`Summary`] |
//! | `wiring` | how the prime and echo services plug into the application |
//! | `launch` | start-up and exit shared by the server binaries ([`run_server`]) |
//! | `admin` | the small HTTP listener for `/metrics`, `/livez`, `/readyz` |
//! | `registry` | the metrics registry, its prefix and the build and logger metrics |
//! | `health` | readiness and liveness, for `/readyz` and the watchdog |
//! | `systemd` | `sd_notify` readiness, reload, stop and watchdog |
//! | `terminal_log` | the terminal logger (slog-term or JSON behind slog-async), never blocking |
//! | `signals` | SIGINT/SIGTERM stop, SIGHUP reopens |

mod admin;
mod app;
pub mod flags;
mod health;
mod launch;
mod registry;
mod signals;
mod systemd;
mod terminal_log;
mod wiring;

pub use admin::{Admin, AdminView};
pub use app::{Server, Service, Summary};
pub use health::Health;
pub use launch::{inherited_listener, run_server};
pub use registry::encode;
pub use signals::FORCED_EXIT_STATUS;
pub use terminal_log::{discard, LogFormat, LogLevel};
