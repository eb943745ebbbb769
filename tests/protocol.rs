//! Every rule of the protocol (docs/protocol.md#one-request) and of the
//! audit line (README.md#the-audit-line), checked against a running server on
//! 127.0.0.1:0: line framing, Python's `int()` grammar, the three replies,
//! the audit line format and its escaping.

use std::io::Write;
use test_support::{
    audit::parse_audit,
    io::{ask, ask_line, connect, exchange, read_to_close},
    server::TestServer,
    tools::skip,
};

#[test]
fn seed_clients_eight_numbers() {
    // docs/protocol.md#the-seed-client: the seed client's eight numbers.
    let server = TestServer::start();
    let expected = [
        ("4j", "E"),
        ("4", "F"),
        ("5", "T"),
        ("-5", "F"),
        ("17", "T"),
        ("29", "T"),
        ("1125899906842624", "F"),
        ("1125899906842623", "F"),
    ];
    for (sent, reply) in expected {
        assert_eq!(ask(server.addr, sent), format!("{reply}\n"), "sent {sent}");
    }
    let audit = server.audit_lines();
    assert_eq!(audit.len(), expected.len());
    for (line, (sent, reply)) in audit.iter().zip(expected) {
        assert_eq!(parse_audit(line).code, reply, "{line}");
        assert!(line.contains(&format!("'{sent}'")), "{line}");
    }
}

#[test]
fn python_int_grammar_is_accepted() {
    // docs/protocol.md#one-request, step 2: Python's int() grammar.
    let server = TestServer::start();
    let cases: &[(&[u8], &str)] = &[
        (b" +1_7 ", "T"),
        (b"\t17\r", "T"),
        (b"\x0b\x0c 17 \x0c\x0b", "T"),
        (b"007", "T"),
        (b"1_000_003", "T"),
        (b"-0", "F"),
        (b"0", "F"),
        (b"1", "F"),
        (b"2", "T"),
        (b"-2", "F"),
        (b"+13", "T"),
        (b"1_000_000", "F"),
    ];
    for (line, reply) in cases {
        let got = ask_line(server.addr, line);
        assert_eq!(got, format!("{reply}\n").as_bytes(), "sent {line:?}");
    }
}

#[test]
fn everything_else_is_not_an_integer() {
    // docs/protocol.md#one-request, step 2: anything else is not an integer.
    let server = TestServer::start();
    let cases: &[&[u8]] = &[
        b"0x11",
        b"17.0",
        b"1e3",
        b"4j",
        b"1 7",
        b"+-1",
        b"- 5",
        b"",
        b"   ",
        b"_17",
        b"17_",
        b"1__7",
        b"\xd9\xa1\xd9\xa7", // Arabic-Indic "17": str accepts it, bytes do not
        b"17\x00",
        b"\x00",
        b"\xff\xfe",
        b"\x1c17", // not whitespace to Python's bytes.strip()
        b"seventeen",
    ];
    for line in cases {
        assert_eq!(ask_line(server.addr, line), b"E\n", "sent {line:?}");
    }
}

#[test]
fn digit_limit_is_pythons() {
    // docs/protocol.md#one-request: at most 4300 digits, underscores not
    // counted.
    let server = TestServer::start();
    let at_limit = format!("1{}", "0".repeat(4299));
    assert_eq!(ask(server.addr, &at_limit), "F\n");
    let zeros_at_limit = format!("{}7", "0".repeat(4299));
    assert_eq!(ask(server.addr, &zeros_at_limit), "T\n");
    let underscores_not_counted = format!("1_{}", "0".repeat(4299));
    assert_eq!(ask(server.addr, &underscores_not_counted), "F\n");
    let over = format!("1{}", "0".repeat(4300));
    assert_eq!(ask(server.addr, &over), "E\n");
    let audit = server.audit_lines();
    let last = parse_audit(audit.last().expect("audit line"));
    assert_eq!(last.code, "E");
    assert!(
        last.phrase.contains("more than 4300 digits (4301)"),
        "{}",
        last.phrase
    );
    assert!(
        last.phrase.contains("...[+"),
        "long input is cut: {}",
        last.phrase
    );
}

#[test]
fn big_integers_get_exact_answers() {
    // docs/protocol.md#answers: exact below 2^64, Baillie-PSW above.
    let server = TestServer::start();
    let m127 = "170141183460469231731687303715884105727"; // 2^127 - 1
    assert_eq!(ask(server.addr, m127), "T\n");
    assert_eq!(ask(server.addr, "3825123056546413051"), "F\n");
    assert_eq!(ask(server.addr, "18446744073709551557"), "T\n");
    assert_eq!(ask(server.addr, "18446744073709551629"), "T\n"); // 2^64 + 13
    assert_eq!(ask(server.addr, "318665857834031151167461"), "F\n");
    assert_eq!(ask(server.addr, &format!("-{m127}")), "F\n");
}

#[test]
fn eof_without_newline_ends_the_line() {
    // docs/protocol.md#one-request, step 1: a half-close before any newline
    // ends the line.
    let server = TestServer::start();
    assert_eq!(exchange(server.addr, b"17"), b"T\n");
    assert_eq!(exchange(server.addr, b" 4j "), b"E\n");
}

#[test]
fn only_the_first_line_is_answered_and_the_server_closes() {
    // docs/protocol.md#one-request, step 4: one request per connection.
    let server = TestServer::start();
    // The reply is exactly one letter and a newline, then the server closes
    // (read_to_close returns): the rest of the input is ignored.
    assert_eq!(exchange(server.addr, b"17\n18\n19\n"), b"T\n");
    assert_eq!(server.audit_lines().len(), 1);
}

#[test]
fn a_connection_without_bytes_is_not_a_request() {
    // docs/protocol.md#one-request, step 1: no bytes, no reply, no audit line.
    let server = TestServer::start();
    assert_eq!(exchange(server.addr, b""), b"");
    // A request after it proves the server has seen and dropped the first.
    assert_eq!(ask(server.addr, "5"), "T\n");
    let audit = server.audit_lines();
    assert_eq!(audit.len(), 1, "{audit:?}");
}

#[test]
fn the_client_may_wait_for_the_close_without_half_closing() {
    let server = TestServer::start();
    let mut stream = connect(server.addr);
    stream.write_all(b"29\n").unwrap();
    assert_eq!(read_to_close(&mut stream), b"T\n");
}

#[test]
fn audit_lines_have_the_documented_format() {
    // README.md#the-audit-line: time, peer, code, phrase; canonical decimal.
    let server = TestServer::start();
    let mut stream = connect(server.addr);
    let client_addr = stream.local_addr().unwrap();
    stream.write_all(b"+017\n").unwrap();
    assert_eq!(read_to_close(&mut stream), b"T\n");
    assert_eq!(ask(server.addr, "-0"), "F\n");
    assert_eq!(ask(server.addr, "0x11"), "E\n");
    let audit = server.audit_lines();
    let records: Vec<_> = audit.iter().map(|l| parse_audit(l)).collect();
    assert_eq!(records[0].peer, client_addr.to_string());
    assert_eq!(records[0].code, "T");
    assert_eq!(records[0].phrase, "'17' is a prime number");
    assert_eq!(records[1].code, "F");
    assert_eq!(records[1].phrase, "'0' is not a prime number");
    assert_eq!(records[2].code, "E");
    assert_eq!(records[2].phrase, "'0x11' is not an integer");
}

#[test]
fn audit_log_escapes_every_dangerous_byte() {
    // docs/operations.md#limits-and-failure-behaviour, log injection, and
    // README.md#the-audit-line: every dangerous byte escaped.
    let server = TestServer::start();
    let hostile: &[&[u8]] = &[
        b"\x1b[2J\x1b[31mred",     // clear screen, colour
        b"\x1b]0;owned title\x07", // OSC window title
        b"12\rforged T line",      // bare CR
        b"a\\b'c\"d",              // backslash and quotes
        b"\x9b31m\x7f\x00",        // C1 CSI, DEL, NUL
        b"\xc3\xa9\xff",           // UTF-8 and invalid UTF-8
    ];
    for line in hostile {
        assert_eq!(ask_line(server.addr, line), b"E\n");
    }
    let raw = std::fs::read(&server.audit_path).unwrap();
    assert!(
        raw.iter().all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)),
        "audit log holds a raw control or non-ASCII byte"
    );
    let audit = server.audit_lines();
    assert_eq!(audit.len(), hostile.len(), "a client forged an extra line");
    let phrases: Vec<_> = audit.iter().map(|l| parse_audit(l).phrase).collect();
    assert_eq!(phrases[0], "'\\x1b[2J\\x1b[31mred' is not an integer");
    assert_eq!(phrases[1], "'\\x1b]0;owned title\\x07' is not an integer");
    assert_eq!(phrases[2], "'12\\x0dforged T line' is not an integer");
    assert_eq!(phrases[3], "'a\\\\b\\'c\\\"d' is not an integer");
    assert_eq!(phrases[4], "'\\x9b31m\\x7f\\x00' is not an integer");
    assert_eq!(phrases[5], "'\\xc3\\xa9\\xff' is not an integer");
}

#[test]
fn long_inputs_are_cut_in_the_audit_log_with_a_marker() {
    // README.md#the-audit-line: past 256 bytes cut with a visible marker.
    let server = TestServer::start();
    let junk = "x".repeat(1000);
    assert_eq!(ask(server.addr, &junk), "E\n");
    let record = parse_audit(&server.audit_lines()[0]);
    assert_eq!(
        record.phrase,
        format!("'{}'...[+744 bytes] is not an integer", "x".repeat(256))
    );
}

#[test]
fn concurrent_audit_lines_never_tear() {
    // docs/audit-integrity.md#guarantees: lines from concurrent workers never
    // interleave or tear.
    let server = TestServer::start();
    let threads = 8;
    let per_thread = 50;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let addr = server.addr;
            scope.spawn(move || {
                for i in 0..per_thread {
                    // A mix of lengths, so torn writes would show.
                    let line = format!("{}{}", t + 1, "7".repeat(i % 30));
                    let reply = ask(addr, &line);
                    assert!(matches!(reply.as_str(), "T\n" | "F\n"), "{reply:?}");
                }
            });
        }
    });
    let audit = server.audit_lines();
    assert_eq!(audit.len(), threads * per_thread);
    for line in &audit {
        let record = parse_audit(line);
        assert!(record.code == "T" || record.code == "F", "{line}");
        assert!(
            record.phrase.ends_with("is a prime number")
                || record.phrase.ends_with("is not a prime number"),
            "{line}"
        );
    }
}

#[test]
fn summary_counts_every_reply() {
    // docs/operations.md#terminal-logs: the summary counts T, F, E and
    // connections.
    let server = TestServer::start();
    for n in ["2", "4", "x", "7"] {
        ask(server.addr, n);
    }
    let summary = server.stop();
    assert_eq!(
        (
            summary.service.prime,
            summary.service.not_prime,
            summary.service.not_integer
        ),
        (2, 1, 1)
    );
    assert_eq!(summary.connections, 4);
    assert_eq!(summary.panics, 0);
}

#[test]
fn ipv6_loopback_works_where_available() {
    // docs/operations.md#running-it, --listen: IPv6 works ([::1]).
    let listener = match std::net::TcpListener::bind("[::1]:0") {
        Ok(listener) => listener,
        Err(e) => return skip(&format!("this machine has no IPv6 loopback: {e}")),
    };
    let server = TestServer::start_on(listener, |_| {});
    assert!(server.addr.is_ipv6());
    assert_eq!(ask(server.addr, "17"), "T\n");
    let audit = server.audit_lines();
    assert!(
        parse_audit(&audit[0]).peer.starts_with("[::1]:"),
        "{audit:?}"
    );
    assert_eq!(server.stop().service.prime, 1);
}
