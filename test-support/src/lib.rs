//! Helpers for prime-server's integration tests (`tests/*.rs`) and for
//! prime-bench, compiled once as a library instead of once per test binary.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`server`] | [`TestServer`](server::TestServer): the server on a thread of the test process |
//! | [`process`] | [`ServerProcess`](process::ServerProcess): the real `prime-server` or `echo-server` binary |
//! | [`io`] | client side: connect, ask, raw exchanges, bounded waits, load while something happens |
//! | [`audit`] | reading and parsing audit log lines |
//! | [`proxy`] | PROXY protocol v1 and v2 headers, as HAProxy writes them |
//! | [`sock_diag`] | asking the kernel about one TCP socket (bytes read, accept queue, state) |
//! | [`haproxy`] | HAProxy run as `deploy/haproxy.cfg` ships it (scale-out test and bench) |
//! | [`tools`] | external tools (`haproxy`, `strace`, ...) and skipping loudly off CI |
//!
//! Every wait here is bounded (most by [`io::IO_TIMEOUT`]), so a broken
//! server fails a test instead of hanging it.

#![warn(missing_docs)]

pub mod audit;
pub mod haproxy;
pub mod io;
pub mod process;
pub mod proxy;
pub mod server;
pub mod sock_diag;
pub mod tools;
