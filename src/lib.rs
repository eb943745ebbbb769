//! prime-server: a TCP service that tells whether a line holds a prime.
//!
//! A client connects, sends one line, and gets back `T\n` (prime), `F\n`
//! (an integer, not prime) or `E\n` (not an integer); every answer is first
//! appended to an audit log. Integers are parsed exactly as Python's
//! `int(bytes)` parses them, up to 4300 digits.
//!
//! # The map
//!
//! Four layers, one folder each; a layer imports only the layers below it:
//!
//! ```text
//!  ops/     flags, the application (Server<S>), start-up, admin endpoint,
//!   |       metrics registry, health, systemd, logging, signals
//!   |       (knows every layer; nothing below knows it)
//!  prime/   Python's int() grammar, primality, the verdict and the one
//!   |       decision for a line, the prime service (a Handler)
//!  audit/   the audit log (whole lines, sync policy, reopen), seals and
//!   |       their verification
//!  net/     accept loop, waiting room, workers, heavy lane, connections
//!           and line framing, admission and per-address limits, PROXY
//!           protocol, shutdown
//!
//!  echo     a second Handler on the same core     client   the client side
//!  escape   client bytes made safe for any log (a leaf every layer uses)
//!  lock     the mutex of the per-request locks: sleeps, never yields (a leaf)
//! ```
//!
//! | module | what it is |
//! | --- | --- |
//! | [`net`] | the network core, generic over a [`Handler`](net::Handler) |
//! | [`audit`] | the audit trail and its seals ([`audit::seal`]) |
//! | [`prime`] | the prime service: parse, decide, audit, reply |
//! | [`ops`] | the binaries' flags, the [`Server`](ops::Server) application, the admin endpoint |
//! | [`echo`] | the echo service: `GOT:` plus each line |
//! | [`client`] | the client side, used by `prime-client` and `prime-bench` |
//!
//! Each layer's own page lists its modules and says what it may import.
//!
//! # The path of a connection
//!
//! One job per thread, as in Tomcat's NIO connector (Acceptor, Poller,
//! Executor), around the user's blocking accept loop and fixed pool:
//!
//! ```text
//!  TcpListener --accept--> acceptor ---- line already there? ----yes---.
//!   (blocking)             admission,      | no                         v
//!                          PROXY trust     v                  ready queue -> threadpool worker
//!                                        room  --line complete-->  Handler::serve
//!                                  one mio thread:                   decide (parse, test)
//!                                  waiting for a line,               audit  -> seal
//!                                  slow readers, idle                reply
//!                                  keep-alive, lingering,              |  costly number?
//!                                  rate-limited; deadlines             v
//!                                        ^                          heavy lane,
//!                                        '--- no line buffered ---  fair by address
//! ```
//!
//! Every hand-off between them goes through one function, the core's
//! `process` (see [`net`]). A connection holds a worker only while it has
//! a complete line to answer: stalled, idle and slow clients wait in the
//! room, and costly numbers wait for the heavy lane, so no client can
//! starve the others.
//!
//! `main` parses flags and calls [`ops::run_server`], which builds the
//! logger, binds, and runs a [`Server`](ops::Server) opened on a
//! [`PrimeService`](prime::PrimeService); tests open the same server on
//! `127.0.0.1:0` and run it on a thread.

pub mod audit;
pub mod client;
pub mod echo;
mod escape;
mod lock;
pub mod net;
pub mod ops;
pub mod prime;
