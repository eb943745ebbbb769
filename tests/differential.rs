//! The parser against Python's own `int()`, on many generated inputs.
//!
//! Runs `python3`; where it is missing (or older than 3.11, without the
//! 4300-digit limit) the test skips loudly, and on CI (`CI` set) it fails:
//! `make test` installs python3.

use prime_server::prime::{parse_int, MAX_DIGITS};
use std::io::Write;
use std::process::{Command, Stdio};
use test_support::tools::skip;

/// Reads hex-encoded lines, answers `OK <canonical>` or `ERR` per line.
const PYTHON: &str = r#"
import sys
sys.set_int_max_str_digits(4300)
out = []
for line in sys.stdin:
    data = bytes.fromhex(line.strip())
    try:
        out.append("OK " + str(int(data)))
    except ValueError:
        out.append("ERR")
sys.stdout.write("\n".join(out) + "\n")
"#;

/// splitmix64, so every run draws the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &'a [&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }
}

/// Inputs built from the bytes the grammar cares about, in random order.
fn random_soup(rng: &mut Rng) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"0",
        b"1",
        b"7",
        b"9",
        b"_",
        b"__",
        b"+",
        b"-",
        b" ",
        b"\t",
        b"\n",
        b"\r",
        b"\x0b",
        b"\x0c",
        b"\x1c",
        b"\x1f",
        b"\x00",
        b"\x85",
        b"\xa0",
        b"\xff",
        b"x",
        b"e",
        b".",
        b"j",
        "\u{0661}".as_bytes(),
        "\u{ff11}".as_bytes(),
    ];
    let len = rng.below(12);
    (0..len).flat_map(|_| rng.pick(PIECES).to_vec()).collect()
}

/// Mostly valid numbers: sign, digits with underscores, whitespace padding,
/// sometimes one corrupting byte.
fn near_valid(rng: &mut Rng) -> Vec<u8> {
    const SPACE: &[&[u8]] = &[b"", b" ", b"\t", b"\r\n", b"\x0b\x0c", b"  \n"];
    const SIGN: &[&[u8]] = &[b"", b"", b"+", b"-"];
    let mut line = rng.pick(SPACE).to_vec();
    line.extend_from_slice(rng.pick(SIGN));
    let digits = 1 + rng.below(40);
    for i in 0..digits {
        if i > 0 && rng.below(5) == 0 {
            line.push(b'_');
        }
        line.push(b'0' + rng.below(10) as u8);
    }
    line.extend_from_slice(rng.pick(SPACE));
    if rng.below(4) == 0 {
        let at = rng.below(line.len() + 1);
        line.insert(
            at,
            *rng.pick(&[b"_", b"+", b"-", b" ", b"\x00", b"a"])
                .first()
                .unwrap_or(&b'_'),
        );
    }
    line
}

/// Around the digit limit, with and without underscores and leading zeros.
fn near_limit(rng: &mut Rng) -> Vec<u8> {
    let digits = MAX_DIGITS - 2 + rng.below(5);
    let mut line = Vec::new();
    for i in 0..digits {
        if i > 0 && rng.below(50) == 0 {
            line.push(b'_');
        }
        line.push(if i < 3 {
            b'0'
        } else {
            b'1' + rng.below(9) as u8
        });
    }
    line
}

fn ours(line: &[u8]) -> String {
    match parse_int(line) {
        Ok(n) => format!("OK {n}"),
        Err(_) => "ERR".to_owned(),
    }
}

#[test]
fn parser_agrees_with_pythons_int() {
    let mut rng = Rng(0xd1ff);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for i in 0..30_000 {
        inputs.push(match i % 10 {
            0..=4 => random_soup(&mut rng),
            5..=8 => near_valid(&mut rng),
            _ if i % 100 == 9 => near_limit(&mut rng),
            _ => near_valid(&mut rng),
        });
    }
    let stdin: String = inputs
        .iter()
        .map(|l| l.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    let child = Command::new("python3")
        .args(["-c", PYTHON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            return skip(&format!(
                "python3 cannot be run ({e}); make test installs it"
            ))
        }
    };
    let mut pipe = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || pipe.write_all(stdin.as_bytes()));
    let output = child.wait_with_output().expect("python3 runs");
    writer.join().expect("writer").expect("write to python3");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("set_int_max_str_digits") {
            return skip("python3 is older than 3.11 (no 4300-digit limit to compare)");
        }
        panic!("python3 failed: {stderr}");
    }
    let answers = String::from_utf8(output.stdout).expect("utf-8");
    let answers: Vec<&str> = answers.lines().collect();
    assert_eq!(answers.len(), inputs.len());
    let mut accepted = 0;
    for (input, python) in inputs.iter().zip(answers) {
        assert_eq!(ours(input), python, "input {input:?}");
        accepted += usize::from(python.starts_with("OK"));
    }
    // The generators must exercise both sides of the grammar.
    assert!(accepted > 5_000 && accepted < 25_000, "accepted {accepted}");
}
