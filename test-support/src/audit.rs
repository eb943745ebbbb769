//! Reading an audit log: its lines, each split into its four fields
//! (`<time> <peer> <code> <phrase>`), and the answers it records.

use std::collections::HashSet;
use std::path::Path;

/// One parsed audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The RFC 3339 timestamp as written.
    pub time: String,
    /// The client address as written.
    pub peer: String,
    /// `T`, `F` or `E`.
    pub code: String,
    /// The rest of the line.
    pub phrase: String,
}

/// Splits an audit line into its four fields, checking that the timestamp
/// is RFC 3339 in UTC; panics (failing the test) otherwise.
pub fn parse_audit(line: &str) -> AuditRecord {
    let mut parts = line.splitn(4, ' ');
    let mut next = || {
        parts
            .next()
            .unwrap_or_else(|| panic!("short audit line: {line:?}"))
            .to_owned()
    };
    let record = AuditRecord {
        time: next(),
        peer: next(),
        code: next(),
        phrase: next(),
    };
    humantime::parse_rfc3339(&record.time)
        .unwrap_or_else(|e| panic!("bad timestamp in {line:?}: {e}"));
    assert!(record.time.ends_with('Z'), "timestamp not UTC: {line:?}");
    record
}

/// The (number, code) pairs an audit log records for `T` and `F` lines
/// (the number is the one quoted in the phrase).
pub fn audited_answers(lines: &[String]) -> HashSet<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let r = parse_audit(l);
            (
                r.phrase.split('\'').nth(1).unwrap_or_default().to_owned(),
                r.code,
            )
        })
        .collect()
}

/// The lines of a text file (an audit log, say), or none if it does not
/// exist yet.
pub fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .expect("audit log is UTF-8 (it should be pure ASCII)")
            .lines()
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_line_splits_into_its_four_fields() {
        let line = "2024-05-01T12:00:00.123456Z 127.0.0.1:5000 T '17' is a prime number";
        assert_eq!(
            parse_audit(line),
            AuditRecord {
                time: "2024-05-01T12:00:00.123456Z".into(),
                peer: "127.0.0.1:5000".into(),
                code: "T".into(),
                phrase: "'17' is a prime number".into(),
            }
        );
        assert_eq!(
            audited_answers(&[line.to_owned()]),
            HashSet::from([("17".to_owned(), "T".to_owned())])
        );
    }

    #[test]
    #[should_panic(expected = "bad timestamp")]
    fn a_timestamp_not_in_utc_fails() {
        parse_audit("2024-05-01T12:00:00+02:00 127.0.0.1:5000 F x");
    }
}
