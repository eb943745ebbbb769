//! The prime protocol's vocabulary and its one decision: the verdict, its
//! one-letter reply, and the audit phrase that explains it.
//!
//! One request is one line; [`decide`] turns it into an [`Answer`] (a
//! [`Verdict`] plus the phrase the audit log records), or into a costly
//! number whose test is left to the heavy lane. The server, the tests and
//! the fuzz target all call it, so what they check is what runs.

use crate::audit::Entry;
use crate::escape::escape_bytes;
use crate::prime::parse::{parse_int, strip, ParseError, ParsedInt};
use crate::prime::primality::{is_heavy, is_prime};

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
        let quoted = escape_bytes(strip(prefix), QUOTED_INPUT_LIMIT).quoted();
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

impl Entry for Answer {
    fn code(&self) -> char {
        self.verdict.code()
    }

    fn phrase(&self) -> &str {
        &self.phrase
    }
}

/// What one line needs.
#[derive(Debug)]
pub enum Decision {
    /// Its answer, decided now.
    Answer(Answer),
    /// An integer whose primality test is costly: it goes to the heavy
    /// lane, which answers it with [`Answer::for_int`] and [`is_prime`].
    Heavy(ParsedInt),
}

/// The one decision for a line (without its `\n`): parse it as Python's
/// `int()` would; a number whose test is cheap is tested at once, a costly
/// one is left to the heavy lane; anything else is not an integer.
pub fn decide(line: &[u8]) -> Decision {
    match parse_int(line) {
        Ok(n) if is_heavy(&n) => Decision::Heavy(n),
        Ok(n) => {
            let prime = is_prime(&n);
            Decision::Answer(Answer::for_int(&n, prime))
        }
        Err(error) => Decision::Answer(Answer::not_integer(strip(line), &error)),
    }
}

/// The answer for a line, testing a costly number at once instead of
/// leaving it to the lane: [`decide`] followed by what the lane does.
pub fn answer(line: &[u8]) -> Answer {
    match decide(line) {
        Decision::Answer(answer) => answer,
        Decision::Heavy(n) => Answer::for_int(&n, is_prime(&n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn costly_numbers_are_left_to_the_lane_and_answered_the_same() {
        for line in [
            "17".to_owned(),
            "18".to_owned(),
            "170141183460469231731687303715884105727".to_owned(), // 2^127 - 1
            format!("1{}7", "0".repeat(298)),
        ] {
            let n = parse_int(line.as_bytes()).unwrap();
            let expected = Answer::for_int(&n, is_prime(&n));
            match decide(line.as_bytes()) {
                Decision::Heavy(m) => {
                    assert!(is_heavy(&n), "{line} is cheap but went to the lane");
                    assert_eq!(m, n);
                }
                Decision::Answer(a) => {
                    assert!(!is_heavy(&n), "{line} is costly but was tested at once");
                    assert_eq!(a, expected);
                }
            }
            assert_eq!(answer(line.as_bytes()), expected);
        }
        assert!(is_heavy(
            &parse_int(format!("1{}7", "0".repeat(298)).as_bytes()).unwrap()
        ));
        assert!(!is_heavy(&parse_int(b"17").unwrap()));
    }

    #[test]
    fn an_answer_is_recorded_with_its_letter_and_phrase() {
        let recorded = |line: &[u8]| {
            let a = answer(line);
            (Entry::code(&a), Entry::phrase(&a).to_owned())
        };
        assert_eq!(recorded(b"17"), ('T', "'17' is a prime number".to_owned()));
        assert_eq!(
            recorded(b"18"),
            ('F', "'18' is not a prime number".to_owned())
        );
        assert_eq!(recorded(b"x"), ('E', "'x' is not an integer".to_owned()));
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
