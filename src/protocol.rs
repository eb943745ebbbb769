//! The prime protocol's vocabulary: the verdict, its one-letter reply, and
//! the audit phrase that explains it.
//!
//! One request is one line; [`Answer::for_line`] turns it into a [`Verdict`]
//! plus the phrase the audit log records (see README.md#the-audit-line for the
//! format).

use crate::escape::escape_bytes;
use crate::parse::{parse_int, ParseError, ParsedInt};

/// How many bytes of a client's input an audit or log line quotes at most.
pub const QUOTED_INPUT_LIMIT: usize = 256;

/// The server's answer to one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `T`: the line is a prime number.
    Prime,
    /// `F`: the line is an integer that is not prime (every n < 2 included).
    NotPrime,
    /// `E`: the line is not an integer under Python's rules.
    NotInteger,
}

impl Verdict {
    /// Every verdict, in reply-letter order `T`, `F`, `E`.
    pub const ALL: [Verdict; 3] = [Verdict::Prime, Verdict::NotPrime, Verdict::NotInteger];

    /// The reply letter: `T`, `F` or `E`.
    pub fn code(self) -> char {
        match self {
            Verdict::Prime => 'T',
            Verdict::NotPrime => 'F',
            Verdict::NotInteger => 'E',
        }
    }

    /// The bytes sent to the client: the letter and a newline.
    pub fn reply(self) -> &'static [u8] {
        match self {
            Verdict::Prime => b"T\n",
            Verdict::NotPrime => b"F\n",
            Verdict::NotInteger => b"E\n",
        }
    }

    /// What the letter means, in words, for people reading client output.
    pub fn meaning(self) -> &'static str {
        match self {
            Verdict::Prime => "prime",
            Verdict::NotPrime => "not prime",
            Verdict::NotInteger => "not an integer",
        }
    }

    /// The verdict a reply letter stands for, if it is one of the three.
    pub fn from_code(code: u8) -> Option<Verdict> {
        match code {
            b'T' => Some(Verdict::Prime),
            b'F' => Some(Verdict::NotPrime),
            b'E' => Some(Verdict::NotInteger),
            _ => None,
        }
    }
}

/// A verdict with the audit phrase that justifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What the client is told.
    pub verdict: Verdict,
    /// What the audit log says, e.g. `'17' is a prime number`; printable
    /// ASCII only, whatever the client sent.
    pub phrase: String,
}

impl Answer {
    /// Answers one line, calling `test` to decide primality of an integer
    /// (so the caller can ration expensive tests).
    pub fn for_line(line: &[u8], test: impl FnOnce(&ParsedInt) -> bool) -> Answer {
        match parse_int(line) {
            Ok(n) => {
                let prime = test(&n);
                Answer::for_int(&n, prime)
            }
            Err(error) => Answer::not_integer(crate::parse::strip(line), &error),
        }
    }

    /// The answer for an integer already parsed and tested.
    pub fn for_int(n: &ParsedInt, prime: bool) -> Answer {
        if prime {
            Answer {
                verdict: Verdict::Prime,
                phrase: format!("'{n}' is a prime number"),
            }
        } else {
            Answer {
                verdict: Verdict::NotPrime,
                phrase: format!("'{n}' is not a prime number"),
            }
        }
    }

    /// The answer for a line that exceeded the server's line limit; `prefix`
    /// is what was read of it before the server stopped reading.
    pub fn too_long(prefix: &[u8], limit: usize) -> Answer {
        let quoted = escape_bytes(crate::parse::strip(prefix), QUOTED_INPUT_LIMIT).quoted();
        Answer {
            verdict: Verdict::NotInteger,
            phrase: format!("{quoted} is not an integer: line longer than {limit} bytes"),
        }
    }

    /// The answer for a stripped line that failed to parse.
    pub fn not_integer(stripped: &[u8], error: &ParseError) -> Answer {
        let quoted = escape_bytes(stripped, QUOTED_INPUT_LIMIT).quoted();
        Answer {
            verdict: Verdict::NotInteger,
            phrase: format!("{quoted} {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prime::is_prime;

    fn answer(line: &[u8]) -> Answer {
        Answer::for_line(line, is_prime)
    }

    #[test]
    fn phrases_use_the_canonical_number() {
        assert_eq!(answer(b"+017\n").phrase, "'17' is a prime number");
        assert_eq!(answer(b" -0 ").phrase, "'0' is not a prime number");
        assert_eq!(answer(b"-5").phrase, "'-5' is not a prime number");
    }

    #[test]
    fn not_integer_quotes_the_stripped_input_escaped() {
        let a = answer(b"  4j\r\n");
        assert_eq!(a.verdict, Verdict::NotInteger);
        assert_eq!(a.phrase, "'4j' is not an integer");
        let a = answer(b"\x1b[2J'\\");
        assert_eq!(a.phrase, "'\\x1b[2J\\'\\\\' is not an integer");
        let a = answer(b"");
        assert_eq!(a.phrase, "'' is not an integer");
    }

    #[test]
    fn too_many_digits_is_explained_and_cut() {
        let a = answer("1".repeat(4301).as_bytes());
        assert_eq!(a.verdict, Verdict::NotInteger);
        assert!(a
            .phrase
            .ends_with("...[+4045 bytes] is not an integer: more than 4300 digits (4301)"));
    }

    #[test]
    fn reply_codes_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::from_code(v.reply()[0]), Some(v));
            assert_eq!(v.reply()[1], b'\n');
            assert_eq!(v.code() as u8, v.reply()[0]);
        }
        assert_eq!(Verdict::from_code(b'X'), None);
    }

    #[test]
    fn letters_replies_and_meanings_are_exact() {
        // What prime-client prints beside each letter (`17: T (prime)`).
        let table = [
            (Verdict::Prime, 'T', &b"T\n"[..], "prime"),
            (Verdict::NotPrime, 'F', b"F\n", "not prime"),
            (Verdict::NotInteger, 'E', b"E\n", "not an integer"),
        ];
        for (verdict, code, reply, meaning) in table {
            assert_eq!(verdict.code(), code);
            assert_eq!(verdict.reply(), reply);
            assert_eq!(verdict.meaning(), meaning);
        }
        assert_eq!(Verdict::ALL.map(Verdict::code), ['T', 'F', 'E']);
    }
}
