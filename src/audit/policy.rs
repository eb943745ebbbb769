//! How durable an answered request's audit line is before its reply:
//! `--audit-sync none|interval:DUR|always`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Shortest and longest `interval:DUR` accepted.
const SYNC_INTERVAL_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(3600));

/// How durable an answered request's audit line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// In the kernel before the reply: survives `kill -9`, not a power cut.
    #[default]
    None,
    /// `fdatasync` every so often: a power cut loses at most this much.
    Interval(Duration),
    /// `fdatasync` before the reply, shared by concurrent requests.
    Always,
}

impl FromStr for SyncPolicy {
    type Err = String;

    /// `none`, `interval:DUR` (e.g. `interval:100ms`) or `always`.
    fn from_str(text: &str) -> Result<SyncPolicy, String> {
        match text {
            "none" => Ok(SyncPolicy::None),
            "always" => Ok(SyncPolicy::Always),
            _ => {
                let Some(interval) = text.strip_prefix("interval:") else {
                    return Err(format!(
                        "'{text}' is not a sync policy: use none, interval:DUR (e.g. interval:1s) or always"
                    ));
                };
                let d = humantime::parse_duration(interval)
                    .map_err(|e| format!("bad interval '{interval}': {e}"))?;
                let (min, max) = SYNC_INTERVAL_BOUNDS;
                if d < min || d > max {
                    return Err(format!(
                        "the interval must be between 1ms and 1h, not {interval}"
                    ));
                }
                Ok(SyncPolicy::Interval(d))
            }
        }
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::None => f.write_str("none"),
            SyncPolicy::Interval(d) => write!(f, "interval:{}", humantime::format_duration(*d)),
            SyncPolicy::Always => f.write_str("always"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_policies_parse() {
        assert_eq!("none".parse(), Ok(SyncPolicy::None));
        assert_eq!("always".parse(), Ok(SyncPolicy::Always));
        assert_eq!(
            "interval:250ms".parse(),
            Ok(SyncPolicy::Interval(Duration::from_millis(250)))
        );
        for bad in [
            "",
            "sometimes",
            "interval:",
            "interval:0s",
            "interval:2h",
            "interval:x",
        ] {
            assert!(bad.parse::<SyncPolicy>().is_err(), "{bad}");
        }
        assert_eq!(
            SyncPolicy::Interval(Duration::from_secs(1)).to_string(),
            "interval:1s"
        );
    }

    #[test]
    fn sync_interval_bounds_are_inclusive() {
        assert_eq!(
            "interval:1ms".parse(),
            Ok(SyncPolicy::Interval(Duration::from_millis(1)))
        );
        assert_eq!(
            "interval:1h".parse(),
            Ok(SyncPolicy::Interval(Duration::from_secs(3600)))
        );
        assert!("interval:999us".parse::<SyncPolicy>().is_err());
        assert!("interval:3601s".parse::<SyncPolicy>().is_err());
        assert_eq!(SyncPolicy::default(), SyncPolicy::None);
        assert_eq!(SyncPolicy::None.to_string(), "none");
        assert_eq!(SyncPolicy::Always.to_string(), "always");
    }
}
