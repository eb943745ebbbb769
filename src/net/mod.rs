//! **net**: the network core. A blocking accept loop, a waiting room that
//! owns every deadline, a fixed worker pool fed by a ready queue, and a
//! heavy lane fair by client address, around any [`Handler`]; connections
//! with line framing, admission caps, per-address limits, the PROXY
//! protocol, and the graceful stop.
//!
//! It knows sockets, time and the [`Handler`] contract, never primes nor
//! audit files: it imports nothing from [`crate::prime`],
//! [`crate::audit`] or [`crate::ops`] (only the crate's leaf modules:
//! `escape`, to quote client bytes in its logs, and `lock`). Every other
//! layer may import it.
//!
//! | module | job |
//! | --- | --- |
//! | `acceptor` | the accept loop (Tomcat's Acceptor) and the stop sequence; [`serve`] runs the whole core |
//! | `listener` | binding, `TCP_DEFER_ACCEPT`, fitting the connection cap under the open-files limit |
//! | `room` | the waiting room (the Poller): readiness through `mio`, every deadline, slow readers, lingering closes |
//! | `worker` | the core's state and its one hand-off, `process`; a worker's turn (the Executor) |
//! | `ready_queue` | connections ready for a worker, and the pool jobs that drain them |
//! | `lane` | the heavy lane: threads of its own, a queue fair by client address |
//! | `handler` | the [`Handler`] contract a service implements |
//! | `connection` | one client connection: non-blocking reads and replies, the close |
//! | `framing` | line framing over a byte buffer, pure (fuzzed) |
//! | `admission` | `--max-connections`: the semaphore and each connection's permit |
//! | `per_address` | per-address connection cap and rate limit |
//! | `proxy` | PROXY protocol v1 and v2 headers, and `--trusted-proxies` |
//! | `shutdown` | the stop flag and the wake-up of a blocked `accept()` |
//! | `liveness` | the marks that prove the core moving (for `/livez` and the watchdog) |
//! | `metrics` | what the core counts |
//! | `options` | how the core runs ([`ServerOptions`]) |

mod acceptor;
mod admission;
mod connection;
mod framing;
mod handler;
mod lane;
mod listener;
mod liveness;
mod metrics;
mod options;
mod per_address;
mod proxy;
mod ready_queue;
mod room;
mod shutdown;
mod worker;

pub use acceptor::{serve, SHUTDOWN_DRAIN_LIMIT};
pub use connection::{Connection, Limits, LINGER, LINGER_BYTES};
pub use framing::{Fill, Line, LineBuffer, Readiness, READ_CHUNK};
pub use handler::{Flow, Handler};
pub use listener::{bind, set_defer_accept, BindError, BACKLOG};
pub use liveness::Liveness;
pub use metrics::CoreMetrics;
pub use options::{cores, default_workers, ServerOptions};
pub use per_address::Rate;
pub use proxy::{
    parse_header, Header, ProxyError, TrustError, TrustedProxies, Version, V1_MAX_LEN, V2_MAX_LEN,
    V2_SIGNATURE,
};
pub use shutdown::Shutdown;

pub(crate) use admission::Semaphore;
pub(crate) use handler::panic_message;
pub(crate) use shutdown::wake_target;
