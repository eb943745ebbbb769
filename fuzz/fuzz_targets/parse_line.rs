//! Fuzzes the one decision the server makes for a line ([`decide`], what a
//! worker calls): no panic, canonical forms round-trip, phrases stay
//! printable ASCII, and a line is answered `E` exactly when it does not
//! parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prime_server::prime::{decide, parse_int, Answer, Decision, Verdict};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_int(data);
    if let Ok(n) = &parsed {
        let canonical = n.to_string();
        assert_eq!(parse_int(canonical.as_bytes()).as_ref(), Ok(n));
        assert!(!canonical.starts_with("-0"));
    }
    // A costly number is left to the heavy lane; its test is not the
    // target here, so its phrase is checked with a stand-in verdict.
    let answer = match decide(data) {
        Decision::Answer(answer) => answer,
        Decision::Heavy(n) => {
            assert_eq!(parsed.as_ref(), Ok(&n));
            Answer::for_int(&n, false)
        }
    };
    assert_eq!(answer.verdict == Verdict::NotInteger, parsed.is_err());
    assert!(answer.phrase.bytes().all(|b| (0x20..0x7f).contains(&b)));
});
