//! The audit line: `TIME PEER CODE PHRASE`, one per answer. The audit
//! trail records any [`Entry`] (a code letter and a phrase); what they
//! mean is the service's business.

use std::net::SocketAddr;
use std::time::SystemTime;

/// What one audit line records besides its time and client: a one-letter
/// code and a phrase explaining it (printable ASCII, escaped by whoever
/// built it). The prime service's answers are entries; the audit trail
/// knows nothing else of them.
pub trait Entry {
    /// The code letter (`T`, `F`, `E`).
    fn code(&self) -> char;
    /// The phrase after it, e.g. `'17' is a prime number`.
    fn phrase(&self) -> &str;
}

/// One audit line, newline included.
pub fn format_line(at: SystemTime, peer: SocketAddr, answer: &impl Entry) -> String {
    format_lines(at, peer, [answer])
}

/// The audit lines of one batch (one client, one moment), newlines
/// included: the time and the address are formatted once for all of them.
pub fn format_lines<'a, E: Entry + 'a>(
    at: SystemTime,
    peer: SocketAddr,
    answers: impl IntoIterator<Item = &'a E>,
) -> String {
    use std::fmt::Write as _;
    let mut prefix = String::with_capacity(80);
    // Writing to a String cannot fail.
    let _ = write!(prefix, "{} {} ", humantime::format_rfc3339_micros(at), peer);
    let answers = answers.into_iter();
    let mut lines = String::with_capacity(answers.size_hint().0 * (prefix.len() + 32));
    for answer in answers {
        lines.push_str(&prefix);
        lines.push(answer.code());
        lines.push(' ');
        lines.push_str(answer.phrase());
        lines.push('\n');
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// An entry as the prime service makes them.
    struct Answer {
        /// The code letter.
        code: char,
        /// The phrase.
        phrase: &'static str,
    }

    impl Entry for Answer {
        fn code(&self) -> char {
            self.code
        }
        fn phrase(&self) -> &str {
            self.phrase
        }
    }

    #[test]
    fn line_format() {
        let at = UNIX_EPOCH + Duration::from_micros(1_790_000_000_123_456);
        let answer = Answer {
            code: 'T',
            phrase: "'17' is a prime number",
        };
        let peer: SocketAddr = "[::1]:4242".parse().unwrap();
        assert_eq!(
            format_line(at, peer, &answer),
            "2026-09-21T14:13:20.123456Z [::1]:4242 T '17' is a prime number\n"
        );
    }

    #[test]
    fn a_batch_shares_its_time_and_peer() {
        let at = UNIX_EPOCH + Duration::from_micros(1_790_000_000_000_001);
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let answers = [
            Answer {
                code: 'T',
                phrase: "'17' is a prime number",
            },
            Answer {
                code: 'E',
                phrase: "'4j' is not an integer",
            },
        ];
        assert_eq!(
            format_lines(at, peer, &answers),
            "2026-09-21T14:13:20.000001Z 127.0.0.1:9 T '17' is a prime number\n\
             2026-09-21T14:13:20.000001Z 127.0.0.1:9 E '4j' is not an integer\n"
        );
        assert_eq!(format_lines::<Answer>(at, peer, []), "");
    }
}
