//! `prime-client`: asks a prime-server about numbers.
//!
//! Numbers come from the arguments, or from stdin one per line when there
//! are none, and go to the server byte for byte, whatever they hold (not
//! UTF-8, say); each answer is printed as soon as it arrives. Exit status: 0
//! when every number was answered, 1 when the server could not be reached,
//! timed out, closed early or broke the protocol, 2 for bad usage.

use clap::Parser;
use prime_server::client::{ask, ask_pipelined, ClientError, Exchange, ReplySink};
use prime_server::ops::flags::{parse_addr, parse_duration};
use std::ffi::OsString;
use std::io::{self, BufRead, BufWriter, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;
use std::time::Duration;

/// Ask a prime-server whether numbers are prime.
#[derive(Debug, Parser)]
// Negative numbers are requests, not flags: `prime-client -5` asks about -5.
#[command(name = "prime-client", version, allow_negative_numbers = true)]
struct ClientArgs {
    /// Server address
    #[arg(long, env = "PRIME_CLIENT_ADDR", default_value = "127.0.0.1:8809", value_parser = parse_addr)]
    addr: SocketAddr,

    /// Send every number on one connection, pipelined (the server needs --keep-alive)
    #[arg(long)]
    keep_alive: bool,

    /// Print only the reply letters (T, F or E), one per line
    #[arg(long, conflicts_with = "json")]
    quiet: bool,

    /// Print one JSON object per number: input, code, meaning, micros
    #[arg(long)]
    json: bool,

    /// Give up on a connect, read or write after this long
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,

    /// Numbers to ask about, sent as given; read from stdin, one per line (blank lines skipped), when none are given
    numbers: Vec<OsString>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy)]
enum Output {
    /// `17: T (prime) in 0.213 ms`
    Human,
    /// `T`
    Quiet,
    /// `{"input":"17","code":"T","meaning":"prime","micros":213}`
    Json,
}

fn main() -> ExitCode {
    let args = ClientArgs::parse();
    let output = match (args.quiet, args.json) {
        (true, _) => Output::Quiet,
        (_, true) => Output::Json,
        _ => Output::Human,
    };
    let stdout = io::stdout();
    let mut printer = Printer {
        out: BufWriter::new(stdout.lock()),
        output,
    };
    let result = run(&args, &mut printer);
    let flushed = printer.out.flush();
    match (result, flushed) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(e), _) => {
            eprintln!("prime-client: {e}");
            ExitCode::FAILURE
        }
        (Ok(()), Err(e)) => {
            eprintln!("prime-client: cannot write output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Asks about every number, printing each answer as it comes.
fn run(args: &ClientArgs, printer: &mut Printer<impl Write>) -> Result<(), ClientError> {
    let numbers: Vec<Vec<u8>> = args
        .numbers
        .iter()
        .cloned()
        .map(OsString::into_vec)
        .collect();
    if args.keep_alive {
        if numbers.is_empty() {
            ask_pipelined(args.addr, stdin_lines(), args.timeout, printer)?;
        } else {
            ask_pipelined(args.addr, numbers, args.timeout, printer)?;
        }
        return Ok(());
    }
    let mut one_at_a_time = |line: Vec<u8>| -> Result<(), ClientError> {
        printer.reply(ask(args.addr, &line, args.timeout)?);
        // Each answer is a whole connection; show it before the next.
        printer.caught_up();
        Ok(())
    };
    if numbers.is_empty() {
        stdin_lines().try_for_each(&mut one_at_a_time)
    } else {
        numbers.into_iter().try_for_each(&mut one_at_a_time)
    }
}

/// Stdin's non-blank lines, byte for byte without their `\n` (a client
/// must send what it is given: the server, not the client, decides what a
/// line means and quotes it in the audit log).
fn stdin_lines() -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    // `Stdin` itself, not its lock: the lines are read on another thread.
    io::BufReader::new(io::stdin())
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
}

/// Prints answers in the chosen format to a buffered `out`, flushing it
/// whenever the client catches up with the server, so a person sees each
/// answer at once and bulk runs still print in large writes.
struct Printer<W> {
    /// Standard output, buffered.
    out: W,
    /// The format.
    output: Output,
}

impl<W: Write> ReplySink for Printer<W> {
    fn reply(&mut self, exchange: Exchange) {
        // A closed stdout (e.g. piped into `head`) must not look like a
        // server failure; stop printing quietly instead.
        let _ = print_exchange(&mut self.out, self.output, &exchange);
    }

    fn caught_up(&mut self) {
        let _ = self.out.flush();
    }
}

/// Prints one answer in the chosen format; an input that is not UTF-8 is
/// shown with U+FFFD in place of its bad bytes (it was sent as it was).
fn print_exchange(out: &mut impl Write, output: Output, e: &Exchange) -> io::Result<()> {
    let code = e.verdict.code();
    let input = String::from_utf8_lossy(&e.input);
    match output {
        Output::Quiet => writeln!(out, "{code}"),
        Output::Json => {
            let object = serde_json::json!({
                "input": input,
                "code": code.to_string(),
                "meaning": e.verdict.meaning(),
                "micros": u64::try_from(e.elapsed.as_micros()).unwrap_or(u64::MAX),
            });
            writeln!(out, "{object}")
        }
        Output::Human => writeln!(
            out,
            "{input}: {code} ({}) in {:.3} ms",
            e.verdict.meaning(),
            e.elapsed.as_secs_f64() * 1000.0
        ),
    }
}
