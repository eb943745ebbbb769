//! Integer parsing with exactly the rules of Python's `int(bytes)`.
//!
//! The service descends from a Python server that called `int()` on each
//! line, so that function's grammar is the contract (see
//! docs/protocol.md#one-request):
//!
//! * ASCII whitespace (space, `\t`, `\n`, `\x0b`, `\x0c`, `\r`) is stripped
//!   from both ends, and nothing else is;
//! * an optional `+` or `-`, then ASCII decimal digits;
//! * a single `_` may stand between two digits, nowhere else;
//! * leading zeros are fine, and `-0` is zero;
//! * at most [`MAX_DIGITS`] digits (Python's default
//!   `sys.int_max_str_digits`), counted without the underscores.
//!
//! The parser works on raw bytes, never panics, and does no arithmetic: it
//! returns the canonical decimal digits, and [`ParsedInt::to_u64`] tells the
//! caller whether the cheap 64-bit primality path applies.

use thiserror::Error;

/// Most digits Python's `int()` accepts by default (`sys.int_max_str_digits`).
pub const MAX_DIGITS: usize = 4300;

/// Why a line is not an integer; the audit log names the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The line is not in Python's integer grammar (this includes an empty line).
    #[error("is not an integer")]
    Invalid,
    /// The line is an integer, but longer than Python agrees to convert.
    #[error("is not an integer: more than {MAX_DIGITS} digits ({digits})")]
    TooManyDigits {
        /// How many digits the line has, underscores not counted.
        digits: usize,
    },
}

/// An integer in canonical form: sign plus decimal digits without leading
/// zeros or underscores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedInt {
    /// True for a value below zero (`-0` is zero, so not negative).
    negative: bool,
    /// Decimal digits of the magnitude, most significant first, no leading
    /// zeros; `"0"` for zero. Always ASCII.
    digits: String,
}

impl ParsedInt {
    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The decimal digits of the absolute value, without leading zeros.
    pub fn magnitude_digits(&self) -> &str {
        &self.digits
    }

    /// The value as a `u64`, when it is non-negative and fits.
    pub fn to_u64(&self) -> Option<u64> {
        if self.negative {
            return None;
        }
        self.digits.parse().ok()
    }

    /// The value as a `u128`, when it is non-negative and fits: such
    /// numbers have a native primality test of their own.
    pub fn to_u128(&self) -> Option<u128> {
        if self.negative {
            return None;
        }
        self.digits.parse().ok()
    }
}

impl std::fmt::Display for ParsedInt {
    /// Canonical decimal, as Python's `str(int(line))` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&self.digits)
    }
}

/// The bytes Python's `bytes.strip()` (and so `int()`) treats as whitespace.
pub fn is_python_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// `line` without leading and trailing Python whitespace.
pub fn strip(line: &[u8]) -> &[u8] {
    let start = line.iter().position(|&b| !is_python_space(b));
    let Some(start) = start else {
        return &[];
    };
    // A non-space byte exists, so `rposition` finds one at or after `start`.
    let end = line
        .iter()
        .rposition(|&b| !is_python_space(b))
        .unwrap_or(start);
    &line[start..=end]
}

/// Parses `line` the way Python's `int(line)` does for a `bytes` argument.
///
/// # Errors
///
/// [`ParseError::Invalid`] when the stripped line is not in the grammar,
/// [`ParseError::TooManyDigits`] when it has more than [`MAX_DIGITS`] digits.
pub fn parse_int(line: &[u8]) -> Result<ParsedInt, ParseError> {
    let body = strip(line);
    let (negative, unsigned) = match body.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, body),
    };
    if unsigned.is_empty() {
        return Err(ParseError::Invalid);
    }
    let mut digits = String::with_capacity(unsigned.len());
    let mut previous_was_digit = false;
    for &b in unsigned {
        match b {
            b'0'..=b'9' => {
                // Skip leading zeros as they come; the digit count below
                // still includes them, as Python's does.
                if !(b == b'0' && digits.is_empty()) {
                    digits.push(char::from(b));
                }
                previous_was_digit = true;
            }
            b'_' if previous_was_digit => previous_was_digit = false,
            _ => return Err(ParseError::Invalid),
        }
    }
    if !previous_was_digit {
        // Trailing underscore.
        return Err(ParseError::Invalid);
    }
    let count = unsigned.iter().filter(|b| b.is_ascii_digit()).count();
    if count > MAX_DIGITS {
        return Err(ParseError::TooManyDigits { digits: count });
    }
    if digits.is_empty() {
        digits.push('0');
    }
    let negative = negative && digits != "0";
    Ok(ParsedInt { negative, digits })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(line: &[u8]) -> Result<String, ParseError> {
        parse_int(line).map(|n| n.to_string())
    }

    #[test]
    fn accepts_what_python_accepts() {
        let cases: &[(&[u8], &str)] = &[
            (b"17", "17"),
            (b" +1_7 ", "17"),
            (b"\t\n\x0b\x0c\r 42 \r\n", "42"),
            (b"007", "7"),
            (b"-0", "0"),
            (b"+0", "0"),
            (b"0_0", "0"),
            (b"-5", "-5"),
            (b"1_000_003", "1000003"),
            (b"-0_12", "-12"),
            (b"18446744073709551616", "18446744073709551616"),
        ];
        for (line, want) in cases {
            assert_eq!(canonical(line).as_deref(), Ok(*want), "{line:?}");
        }
    }

    #[test]
    fn rejects_what_python_rejects() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"+",
            b"-",
            b"4j",
            b"0x11",
            b"17.0",
            b"1e3",
            b"1 7",
            b"+-1",
            b"--1",
            b"- 5",
            b"_1",
            b"1_",
            b"1__0",
            b"+_1",
            b"17\x00",
            b"\x0017",
            b"\x1c17",
            b"17\x1f",
            b"\xa017",
            b"\xff",
            "\u{0661}".as_bytes(), // ARABIC-INDIC DIGIT ONE: str accepts it, bytes do not
        ];
        for line in cases {
            assert_eq!(canonical(line), Err(ParseError::Invalid), "{line:?}");
        }
    }

    #[test]
    fn digit_limit_counts_leading_zeros_but_not_underscores() {
        let at_limit = "0".repeat(MAX_DIGITS);
        assert_eq!(canonical(at_limit.as_bytes()).as_deref(), Ok("0"));
        let over = "0".repeat(MAX_DIGITS + 1);
        assert_eq!(
            canonical(over.as_bytes()),
            Err(ParseError::TooManyDigits {
                digits: MAX_DIGITS + 1
            })
        );
        let with_underscore = format!("1_{}", "0".repeat(MAX_DIGITS - 1));
        assert!(parse_int(with_underscore.as_bytes()).is_ok());
        let signed = format!("-{}", "9".repeat(MAX_DIGITS));
        assert!(parse_int(signed.as_bytes()).is_ok());
    }

    #[test]
    fn u64_boundary() {
        let max = parse_int(b"18446744073709551615").map(|n| n.to_u64());
        assert_eq!(max, Ok(Some(u64::MAX)));
        let over = parse_int(b"18446744073709551616").map(|n| n.to_u64());
        assert_eq!(over, Ok(None));
        assert_eq!(parse_int(b"-1").map(|n| n.to_u64()), Ok(None));
        assert_eq!(parse_int(b"-0").map(|n| n.to_u64()), Ok(Some(0)));
    }

    #[test]
    fn u128_boundary() {
        let max = parse_int(b"340282366920938463463374607431768211455").map(|n| n.to_u128());
        assert_eq!(max, Ok(Some(u128::MAX)));
        let over = parse_int(b"340282366920938463463374607431768211456").map(|n| n.to_u128());
        assert_eq!(over, Ok(None));
        assert_eq!(parse_int(b"-1").map(|n| n.to_u128()), Ok(None));
        assert_eq!(parse_int(b"-0").map(|n| n.to_u128()), Ok(Some(0)));
        assert_eq!(parse_int(b"+0_7").map(|n| n.to_u128()), Ok(Some(7)));
    }

    #[test]
    fn strip_matches_python() {
        assert_eq!(strip(b"  a b \n"), b"a b");
        assert_eq!(strip(b"\x1c a"), b"\x1c a");
        assert_eq!(strip(b" \t "), b"");
        assert_eq!(strip(b""), b"");
    }
}
