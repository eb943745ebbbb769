//! `prime-client`: asks a prime-server about numbers.
//!
//! Numbers come from the arguments, or from stdin one per line when there
//! are none. Exit status: 0 when every number was answered, 1 when the
//! server could not be reached or broke the protocol, 2 for bad usage.

use clap::Parser;
use prime_server::client::{ask, ask_pipelined, ClientError, Exchange};
use prime_server::config::{parse_addr, parse_duration};
use std::io::{self, BufRead, BufWriter, Write};
use std::net::SocketAddr;
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

    /// Numbers to ask about; read from stdin, one per line (blank lines skipped), when none are given
    numbers: Vec<String>,
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
    let mut out = BufWriter::new(stdout.lock());
    let result = run(&args, output, &mut out);
    let flushed = out.flush();
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
fn run(args: &ClientArgs, output: Output, out: &mut impl Write) -> Result<(), ClientError> {
    let mut print = |exchange: Exchange| {
        // A closed stdout (e.g. piped into `head`) must not look like a
        // server failure; stop printing quietly instead.
        let _ = print_exchange(out, output, &exchange);
    };
    let from_stdin = args.numbers.is_empty();
    let stdin_lines = || {
        io::BufReader::new(io::stdin())
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.trim().is_empty())
    };
    if args.keep_alive {
        if from_stdin {
            ask_pipelined(args.addr, stdin_lines(), args.timeout, &mut print)?;
        } else {
            ask_pipelined(
                args.addr,
                args.numbers.iter().cloned(),
                args.timeout,
                &mut print,
            )?;
        }
        return Ok(());
    }
    if from_stdin {
        for line in stdin_lines() {
            print(ask(args.addr, &line, args.timeout)?);
        }
    } else {
        for number in &args.numbers {
            print(ask(args.addr, number, args.timeout)?);
        }
    }
    Ok(())
}

/// Prints one answer in the chosen format.
fn print_exchange(out: &mut impl Write, output: Output, e: &Exchange) -> io::Result<()> {
    let code = e.verdict.code();
    match output {
        Output::Quiet => writeln!(out, "{code}"),
        Output::Json => {
            let object = serde_json::json!({
                "input": e.input,
                "code": code.to_string(),
                "meaning": e.verdict.meaning(),
                "micros": u64::try_from(e.elapsed.as_micros()).unwrap_or(u64::MAX),
            });
            writeln!(out, "{object}")
        }
        Output::Human => writeln!(
            out,
            "{}: {code} ({}) in {:.3} ms",
            e.input,
            e.verdict.meaning(),
            e.elapsed.as_secs_f64() * 1000.0
        ),
    }
}
