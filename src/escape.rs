//! Escaping client bytes before they reach any log.
//!
//! A client controls the bytes it sends; `tail -f` on the audit log or a
//! terminal showing the server's records must never be made to run an escape
//! sequence, move the cursor, set the window title or forge a new line. So
//! every byte outside printable ASCII, plus the backslash and both quotes,
//! is written as `\xNN` (or `\\`, `\'`, `\"`), and the result is cut to a
//! bounded length with a visible marker.

use std::fmt::Write as _;

/// Escapes `input`, keeping at most `max_input_bytes` of it.
///
/// The result is printable ASCII only. When the input was cut, the result
/// ends with `...[+N bytes]` outside any quoting the caller adds, so a reader
/// can tell the marker from the client's own dots.
pub fn escape_bytes(input: &[u8], max_input_bytes: usize) -> Escaped {
    let kept = &input[..input.len().min(max_input_bytes)];
    let mut text = String::with_capacity(kept.len() + 8);
    for &b in kept {
        match b {
            b'\\' => text.push_str("\\\\"),
            b'\'' => text.push_str("\\'"),
            b'"' => text.push_str("\\\""),
            0x20..=0x7e => text.push(char::from(b)),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(text, "\\x{b:02x}");
            }
        }
    }
    Escaped {
        text,
        cut_bytes: input.len() - kept.len(),
    }
}

/// Client bytes made safe for a log, and how many were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escaped {
    /// The escaped prefix: printable ASCII, no quote or backslash unescaped.
    pub text: String,
    /// How many input bytes were dropped to bound the length.
    pub cut_bytes: usize,
}

impl Escaped {
    /// The text in single quotes, followed by the cut marker if any:
    /// `'abc'` or `'abc'...[+120 bytes]`.
    pub fn quoted(&self) -> String {
        if self.cut_bytes == 0 {
            format!("'{}'", self.text)
        } else {
            format!("'{}'...[+{} bytes]", self.text, self.cut_bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_passes_through() {
        let e = escape_bytes(b"hello 17 _+-", 100);
        assert_eq!(e.quoted(), "'hello 17 _+-'");
    }

    #[test]
    fn controls_quotes_and_high_bytes_are_escaped() {
        let e = escape_bytes(b"\x1b[31m\r\n\x00\x7f\x9b\xff'\"\\", 100);
        assert_eq!(e.text, "\\x1b[31m\\x0d\\x0a\\x00\\x7f\\x9b\\xff\\'\\\"\\\\");
        assert!(e.text.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn osc_title_sequence_is_defused() {
        let e = escape_bytes(b"\x1b]0;pwned\x07", 100);
        assert_eq!(e.text, "\\x1b]0;pwned\\x07");
    }

    #[test]
    fn utf8_is_escaped_bytewise() {
        let e = escape_bytes("é".as_bytes(), 100);
        assert_eq!(e.text, "\\xc3\\xa9");
    }

    #[test]
    fn long_input_is_cut_with_a_marker() {
        let e = escape_bytes(&[b'7'; 300], 256);
        assert_eq!(e.cut_bytes, 44);
        assert_eq!(e.quoted(), format!("'{}'...[+44 bytes]", "7".repeat(256)));
    }
}
