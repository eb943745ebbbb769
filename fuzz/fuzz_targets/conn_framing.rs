//! Fuzzes a connection's line framing ([`LineBuffer`], the buffer and
//! line-splitting arithmetic `Connection` runs on every `recv`) against a
//! model a few lines long, with any line limit, any read sizes, any number
//! of lines taken per worker turn, with or without EOF:
//!
//! * the lines that come out are exactly the model's, in order: split at
//!   each `\n`; a line longer than the limit is cut to `limit + 1` bytes
//!   and ends the connection's input; at EOF the unterminated rest is a
//!   line;
//! * readiness never lies: `Line` exactly when a line can be taken, and
//!   nothing comes out once `at_eof` says so;
//! * the buffer never holds, nor allocates, more than the limit plus one
//!   read (`READ_CHUNK`): the per-connection memory bound of
//!   docs/operations.md#limits-and-failure-behaviour.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prime_server::net::{Line, LineBuffer, Readiness, READ_CHUNK};

fuzz_target!(|data: &[u8]| {
    let Some((header, stream)) = data.split_first_chunk::<8>() else {
        return;
    };
    // Small limits find splitting bugs fastest; large ones cross READ_CHUNK.
    let limit = if header[0] & 0x80 == 0 {
        1 + usize::from(header[1] % 64)
    } else {
        1 + usize::from(u16::from_le_bytes([header[1], header[2]])) % (3 * READ_CHUNK)
    };
    let eof = header[0] & 1 == 1;
    // Read sizes: 1 to 255 bytes, or a whole chunk and more.
    let sizes: Vec<usize> = header[3..6]
        .iter()
        .map(|&b| if b == 0 { READ_CHUNK + 1 } else { usize::from(b) })
        .collect();
    // Lines per worker turn: 1 to 3, or all there are.
    let budgets: Vec<usize> = header[6..8]
        .iter()
        .map(|&b| if b % 4 == 0 { usize::MAX } else { usize::from(b % 4) })
        .collect();

    let mut buf = LineBuffer::new(limit);
    let mut lines = Vec::new();
    let mut pending = stream;
    let mut sizes = sizes.iter().cycle();
    let mut budgets = budgets.iter().cycle();
    loop {
        let budget = *budgets.next().expect("cycled");
        for _ in 0..budget {
            let ready = check_readiness(&mut buf);
            match buf.split_line() {
                Some(line) => {
                    assert!(ready, "a line came out while readiness said none");
                    lines.push(line);
                }
                None => {
                    assert!(!ready, "readiness said Line but none came out");
                    break;
                }
            }
        }
        if !buf.wants_input() && buf.at_eof() {
            break;
        }
        // The room and the workers read only while no line is ready.
        if check_readiness(&mut buf) || !buf.wants_input() {
            continue;
        }
        if pending.is_empty() && !eof {
            break;
        }
        let size = *sizes.next().expect("cycled");
        let offered = &pending[..pending.len().min(size)];
        let n = buf
            .read_with(|spare| -> Result<usize, ()> {
                let n = spare.len().min(offered.len());
                spare[..n].copy_from_slice(&offered[..n]);
                Ok(n)
            })
            .expect("the read cannot fail");
        pending = &pending[n..];
        assert!(buf.len() <= limit + READ_CHUNK, "{} buffered", buf.len());
        assert!(
            buf.capacity() <= limit + READ_CHUNK,
            "{} allocated",
            buf.capacity()
        );
    }
    while let Some(line) = buf.split_line() {
        lines.push(line);
    }
    if buf.at_eof() {
        assert_eq!(buf.split_line(), None);
    }
    assert_eq!(lines, model(stream, limit, eof));
});

/// Whether readiness says a line is ready, checking that it never says
/// anything else the buffer contradicts.
fn check_readiness(buf: &mut LineBuffer) -> bool {
    match buf.readiness() {
        Readiness::Line => true,
        Readiness::Partial => {
            assert!(!buf.is_empty() && !buf.eof());
            false
        }
        Readiness::Empty => {
            assert!(buf.is_empty() && !buf.eof());
            false
        }
        Readiness::Closed => {
            assert!(buf.at_eof());
            false
        }
        Readiness::Rejected(e) => panic!("the framing rejected a PROXY header: {e}"),
    }
}

/// The lines `stream` holds under `limit`, said as simply as possible.
fn model(stream: &[u8], limit: usize, eof: bool) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut rest = stream;
    loop {
        let window = &rest[..rest.len().min(limit + 1)];
        if let Some(at) = window.iter().position(|&b| b == b'\n') {
            lines.push(Line::Complete(rest[..at].to_vec()));
            rest = &rest[at + 1..];
        } else if rest.len() > limit {
            lines.push(Line::TooLong(rest[..=limit].to_vec()));
            return lines;
        } else {
            if eof && !rest.is_empty() {
                lines.push(Line::Complete(rest.to_vec()));
            }
            return lines;
        }
    }
}
