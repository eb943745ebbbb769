//! Per-client-address limits: how many connections one address may hold
//! open (`--max-connections-per-ip`) and how many lines per second it may
//! have answered (`--max-rate-per-ip`, a token bucket).
//!
//! The address is the real client's: the socket peer, or the address a
//! trusted PROXY header carried. Both limits are off by default; when both
//! are off no state is kept at all.
//!
//! The rate limit never answers wrongly and never drops anything: a
//! connection whose address has no tokens left is simply not served until
//! tokens return (it waits in the waiting room, unread, so the client is
//! slowed by TCP back-pressure). Entries are forgotten once an address has
//! no connection and a full bucket, so memory is bounded by the open
//! connections plus the addresses seen in the last second or so.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request rate such as `100/s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Lines per second allowed, and the bucket's size (one second's worth).
    pub per_second: f64,
}

/// The highest rate `--max-rate-per-ip` accepts.
const MAX_RATE: f64 = 10_000_000.0;

impl FromStr for Rate {
    type Err = String;

    /// Parses `N/s` or `N/m` (N a positive number).
    fn from_str(text: &str) -> Result<Rate, String> {
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("'{text}' is not a rate: write N/s or N/m, e.g. 100/s"))?;
        let count: f64 = count
            .trim()
            .parse()
            .map_err(|_| format!("'{count}' is not a number (write N/s, e.g. 100/s)"))?;
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            other => return Err(format!("unknown unit '{other}' (use /s or /m)")),
        };
        let per_second = count / seconds;
        if !(per_second.is_finite() && per_second > 0.0 && per_second <= MAX_RATE) {
            return Err(format!("must be above 0 and at most {MAX_RATE} per second"));
        }
        Ok(Rate { per_second })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.per_second)
    }
}

/// What [`AddressLimits::take`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Serve up to this many lines now (at least 1).
    Lines(usize),
    /// Serve nothing until then.
    Wait(Instant),
}

/// The per-address state of a server.
#[derive(Debug)]
pub struct AddressLimits {
    /// Each address's connections and tokens.
    entries: Mutex<HashMap<IpAddr, Entry>>,
    /// `--max-connections-per-ip`.
    max_connections: Option<u32>,
    /// `--max-rate-per-ip`.
    rate: Option<Rate>,
}

/// One address's state.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Connections it holds open.
    connections: u32,
    /// Tokens in its bucket (each answers one line).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refreshed: Instant,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} connections from this address are already open (--max-connections-per-ip)")]
pub struct Refused(pub u32);

/// One connection's claim on its address's connection count; dropping it
/// gives the claim back.
#[derive(Debug)]
pub struct AddressSlot {
    /// The registry to give it back to.
    clients: Arc<AddressLimits>,
    /// The address it counts against.
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut entries = self.clients.entries.lock();
        if let Some(entry) = entries.get_mut(&self.ip) {
            entry.connections = entry.connections.saturating_sub(1);
        }
    }
}

impl AddressLimits {
    /// The registry for these limits, or `None` when both are off.
    pub fn new(max_connections: Option<u32>, rate: Option<Rate>) -> Option<Arc<AddressLimits>> {
        if max_connections.is_none() && rate.is_none() {
            return None;
        }
        Some(Arc::new(AddressLimits {
            entries: Mutex::new(HashMap::new()),
            max_connections,
            rate,
        }))
    }

    /// A fresh entry with a full bucket.
    fn fresh(&self, now: Instant) -> Entry {
        Entry {
            connections: 0,
            tokens: self.rate.map_or(0.0, |r| r.per_second),
            refreshed: now,
        }
    }

    /// Counts a new connection from `ip`, or refuses it when the address
    /// already holds `--max-connections-per-ip`.
    ///
    /// # Errors
    ///
    /// [`Refused`] with the cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<AddressSlot, Refused> {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        let entry = entries.entry(ip).or_insert_with(|| self.fresh(now));
        if let Some(max) = self.max_connections {
            if entry.connections >= max {
                return Err(Refused(max));
            }
        }
        entry.connections += 1;
        Ok(AddressSlot {
            clients: Arc::clone(self),
            ip,
        })
    }

    /// Takes up to `want` tokens for `ip`: how many lines may be served
    /// now, or when to try again.
    pub fn take(&self, ip: IpAddr, want: usize, now: Instant) -> Grant {
        let Some(rate) = self.rate else {
            return Grant::Lines(want);
        };
        let mut entries = self.entries.lock();
        let entry = entries.entry(ip).or_insert_with(|| self.fresh(now));
        refill(entry, rate, now);
        // Truncation is the point: whole tokens only.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = entry.tokens.floor().max(0.0) as usize;
        let granted = whole.min(want);
        if granted > 0 {
            #[allow(clippy::cast_precision_loss)]
            {
                entry.tokens -= granted as f64;
            }
            return Grant::Lines(granted);
        }
        let missing = 1.0 - entry.tokens;
        let wait = Duration::from_secs_f64((missing / rate.per_second).clamp(0.000_1, 60.0));
        Grant::Wait(now + wait)
    }

    /// Whether `--max-rate-per-ip` is on (otherwise [`AddressLimits::take`]
    /// grants whatever is asked).
    pub fn rate_limited(&self) -> bool {
        self.rate.is_some()
    }

    /// Gives back `n` tokens taken by [`AddressLimits::take`] but not used (the
    /// turn had fewer lines than it was granted).
    pub fn refund(&self, ip: IpAddr, n: usize) {
        let Some(rate) = self.rate else { return };
        if let Some(entry) = self.entries.lock().get_mut(&ip) {
            #[allow(clippy::cast_precision_loss)]
            let n = n as f64;
            entry.tokens = (entry.tokens + n).min(rate.per_second);
        }
    }

    /// Forgets addresses with no connection and a full bucket.
    pub fn sweep(&self, now: Instant) {
        let rate = self.rate;
        self.entries.lock().retain(|_, entry| {
            if entry.connections > 0 {
                return true;
            }
            match rate {
                Some(rate) => {
                    refill(entry, rate, now);
                    entry.tokens < rate.per_second
                }
                None => false,
            }
        });
    }

    /// How many addresses are tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.entries.lock().len()
    }
}

/// Brings `entry`'s bucket up to `now`.
fn refill(entry: &mut Entry, rate: Rate, now: Instant) {
    let elapsed = now.saturating_duration_since(entry.refreshed).as_secs_f64();
    entry.tokens = (entry.tokens + elapsed * rate.per_second).min(rate.per_second);
    entry.refreshed = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn rates_parse_and_bad_ones_are_explained() {
        assert_eq!("100/s".parse::<Rate>().unwrap().per_second, 100.0);
        assert_eq!("120/m".parse::<Rate>().unwrap().per_second, 2.0);
        for bad in ["100", "0/s", "-1/s", "x/s", "5/h", "1e300/s", "nan/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn both_limits_off_keeps_no_state() {
        assert!(AddressLimits::new(None, None).is_none());
    }

    #[test]
    fn the_connection_cap_counts_and_releases() {
        let clients = AddressLimits::new(Some(2), None).unwrap();
        let a = clients.admit(ip(1)).unwrap();
        let _b = clients.admit(ip(1)).unwrap();
        assert_eq!(clients.admit(ip(1)).unwrap_err(), Refused(2));
        let _other = clients.admit(ip(2)).unwrap();
        drop(a);
        let _c = clients.admit(ip(1)).unwrap();
    }

    #[test]
    fn the_bucket_grants_then_waits_then_refills() {
        let clients = AddressLimits::new(None, Some("10/s".parse().unwrap())).unwrap();
        let t0 = Instant::now();
        assert_eq!(clients.take(ip(1), 4, t0), Grant::Lines(4));
        assert_eq!(clients.take(ip(1), 100, t0), Grant::Lines(6));
        let Grant::Wait(until) = clients.take(ip(1), 1, t0) else {
            panic!("an empty bucket must make the client wait");
        };
        let wait = until - t0;
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(101),
            "{wait:?}"
        );
        assert_eq!(clients.take(ip(2), 1, t0), Grant::Lines(1), "per address");
        assert_eq!(
            clients.take(ip(1), 100, t0 + Duration::from_millis(500)),
            Grant::Lines(5)
        );
        assert_eq!(
            clients.take(ip(1), 100, t0 + Duration::from_secs(60)),
            Grant::Lines(10),
            "the bucket holds one second's worth at most"
        );
    }

    #[test]
    fn sweep_forgets_idle_addresses_with_full_buckets() {
        let clients = AddressLimits::new(Some(5), Some("10/s".parse().unwrap())).unwrap();
        let t0 = Instant::now();
        let slot = clients.admit(ip(1)).unwrap();
        clients.take(ip(2), 5, t0);
        clients.sweep(t0);
        assert_eq!(
            clients.tracked(),
            2,
            "a connection, and a half-empty bucket"
        );
        drop(slot);
        clients.sweep(t0 + Duration::from_secs(2));
        assert_eq!(clients.tracked(), 0);
    }
}
