//! **prime**: the prime service. Python's `int()` grammar on bytes, the
//! primality test (exact below 2^64, Baillie-PSW above: native to
//! 2^128, on GMP's limbs beyond), the verdict and
//! its audit phrase, and the [`PrimeService`] that wires them to the
//! network core (a [`Handler`](crate::net::Handler)) and the audit trail.
//!
//! It may import [`crate::net`] (the handler contract) and
//! [`crate::audit`] (where answers are recorded); it must not import
//! [`crate::ops`], which builds it.
//!
//! | module | job |
//! | --- | --- |
//! | `parse` | Python's `int()` grammar on bytes, up to 4300 digits |
//! | `primality` | whether an integer is prime, and whether testing it is costly |
//! | `verdict` | the verdict, its reply and audit phrase, and [`decide`], the one decision for a line |
//! | `service` | the [`PrimeService`] handler: decide, audit, reply; its [`Config`] and summary |
//! | `metrics` | replies by verdict |

mod metrics;
mod parse;
mod primality;
mod service;
mod verdict;

pub use parse::{parse_int, strip, ParseError, ParsedInt, MAX_DIGITS};
pub use primality::{
    is_heavy, is_prime, is_prime_big, is_prime_integer, is_prime_u128, is_prime_u64,
};
pub use service::{BigTest, Config, PrimeOptions, PrimeService, PrimeSummary};
pub use verdict::{answer, decide, Answer, Decision, Verdict, QUOTED_INPUT_LIMIT};
