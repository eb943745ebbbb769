//! Fuzzes the line parser and the audit phrase built from any line: no
//! panic, canonical forms round-trip, phrases stay printable ASCII.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prime_server::parse::parse_int;
use prime_server::protocol::{Answer, Verdict};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_int(data);
    if let Ok(n) = &parsed {
        let canonical = n.to_string();
        assert_eq!(parse_int(canonical.as_bytes()).as_ref(), Ok(n));
        assert!(!canonical.starts_with("-0"));
    }
    // Primality is not the target here: a constant stands in for it.
    let answer = Answer::for_line(data, |_| false);
    assert_eq!(answer.verdict == Verdict::NotInteger, parsed.is_err());
    assert!(answer.phrase.bytes().all(|b| (0x20..0x7f).contains(&b)));
});
