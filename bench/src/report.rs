//! The bench's output: one markdown table per workload, with ratios to the
//! cheapest floor, the targets, and an SVG chart of latency percentiles
//! against concurrency.

use crate::load::LoadResult;
use crate::servers::Kind;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// One server's figures for one workload.
#[derive(Debug, Clone)]
pub struct Row {
    /// Which server.
    pub kind: Kind,
    /// The row's name when it is not just the server's (the same server
    /// run several ways in one table); `None` for [`Kind::name`].
    pub label: Option<String>,
    /// The merged rounds, or why there are none.
    pub outcome: Result<Measured, String>,
    /// Cells of the table's [`Table::extra_columns`], in order.
    pub extra: Vec<String>,
}

impl Row {
    /// A row named after its server, without extra cells.
    pub fn plain(kind: Kind, outcome: Result<Measured, String>) -> Row {
        Row {
            kind,
            label: None,
            outcome,
            extra: Vec::new(),
        }
    }

    /// The name in the table's first column.
    pub fn name(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.kind.name())
    }
}

/// What was measured for one server.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The generator's view.
    pub load: LoadResult,
    /// Server CPU time over the measured rounds (every instance's, when
    /// there are several); `None` when it cannot be put on the measured
    /// requests (the server was also busy with other load).
    pub server_cpu: Option<Duration>,
    /// Server context switches (all threads, voluntary and not) over the
    /// measured rounds; `None` when /proc could not be read.
    pub server_context_switches: Option<u64>,
    /// Server peak RSS in KiB.
    pub peak_rss_kib: Option<u64>,
}

impl Measured {
    /// Server CPU microseconds per answered request, when it is the
    /// measured requests' own.
    pub fn cpu_per_request(&self) -> Option<f64> {
        self.server_cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / self.load.requests.max(1) as f64)
    }

    /// Server context switches per answered request: each one is a thread
    /// put to sleep and woken (or preempted), the cost a hand-off adds.
    pub fn context_switches_per_request(&self) -> Option<f64> {
        self.server_context_switches
            .map(|cs| cs as f64 / self.load.requests.max(1) as f64)
    }

    /// The load generator's own CPU microseconds per answered request, to
    /// tell whether it, not the server, was the limit.
    pub fn generator_cpu_per_request(&self) -> f64 {
        self.load.generator_cpu.as_secs_f64() * 1e6 / self.load.requests.max(1) as f64
    }
}

/// One workload's table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Heading, e.g. `line 17, 32 connections, connection per request`.
    pub title: String,
    /// What the reader needs to read the table (setup, what a column
    /// means), printed under the heading.
    pub notes: Vec<String>,
    /// One row per server.
    pub rows: Vec<Row>,
    /// Headings of columns after the standard ones, specific to this
    /// table (each row's [`Row::extra`] fills them).
    pub extra_columns: Vec<String>,
}

impl Table {
    /// A table with the standard columns only.
    pub fn plain(title: String, rows: Vec<Row>) -> Table {
        Table {
            title,
            notes: Vec::new(),
            rows,
            extra_columns: Vec::new(),
        }
    }

    /// The measured row named `name` (see [`Row::name`]), if it ran.
    pub fn measured_row(&self, name: &str) -> Option<&Measured> {
        self.rows
            .iter()
            .find(|r| r.name() == name)?
            .outcome
            .as_ref()
            .ok()
    }

    /// The measured row of `kind`, if it ran.
    pub fn measured(&self, kind: Kind) -> Option<&Measured> {
        self.rows
            .iter()
            .find(|r| r.kind == kind)?
            .outcome
            .as_ref()
            .ok()
    }

    /// The floor that spent the least server CPU per request: the one the
    /// ratios and targets compare against, since a floor is the cheapest a
    /// server can be and each thread count is a legitimate way to run it.
    pub fn cheapest_floor(&self) -> Option<(Kind, &Measured)> {
        self.rows
            .iter()
            .filter(|r| r.kind.is_floor())
            .filter_map(|r| Some((r.kind, r.outcome.as_ref().ok()?)))
            .filter(|(_, m)| m.load.requests > 0 && m.cpu_per_request().is_some())
            .min_by(|a, b| {
                let cpu = |m: &Measured| m.cpu_per_request().unwrap_or(f64::INFINITY);
                cpu(a.1).total_cmp(&cpu(b.1))
            })
    }

    /// The table in markdown, with ratios to the cheapest floor.
    pub fn markdown(&self) -> String {
        let cheapest = self.cheapest_floor();
        let floor = cheapest.map(|(_, m)| m);
        let mut out = format!("### {}\n\n", self.title);
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        if let Some((kind, _)) = cheapest {
            let _ = writeln!(
                out,
                "Ratios \"vs floor\" are against the cheapest floor by server CPU per request: {}.\n",
                kind.name()
            );
        }
        let mut header: Vec<&str> = vec![
            "server",
            "req/s",
            "p50",
            "p99",
            "max",
            "server CPU us/req",
            "server cs/req",
            "peak RSS",
            "errors",
            "wrong",
            "req/s vs floor",
            "p99 vs floor",
            "CPU/req vs floor",
            "cs/req vs floor",
            "load gen CPU us/req",
        ];
        header.extend(self.extra_columns.iter().map(String::as_str));
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(
            out,
            "| --- |{}",
            " ---: |".repeat(header.len().saturating_sub(1))
        );
        for row in &self.rows {
            let mut cells = vec![row.name()];
            match &row.outcome {
                Err(why) => {
                    cells.push(format!("n/a: {why}"));
                    cells.resize(header.len() - self.extra_columns.len(), String::new());
                }
                Ok(m) => {
                    let ratio = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
                        (Some(ours), Some(theirs)) if theirs > 0.0 => {
                            format!("{:.2}x", ours / theirs)
                        }
                        _ => "-".to_owned(),
                    };
                    let cpu = m.cpu_per_request();
                    let cs = m.context_switches_per_request();
                    cells.extend([
                        rate(m.load.rate()),
                        micros(m.load.percentile(50.0)),
                        micros(m.load.percentile(99.0)),
                        micros(m.load.latency.max()),
                        cpu.map_or("-".to_owned(), |c| format!("{c:.1}")),
                        cs.map_or("-".to_owned(), |c| format!("{c:.2}")),
                        m.peak_rss_kib.map_or("?".to_owned(), mib),
                        m.load.errors.to_string(),
                        m.load.wrong.to_string(),
                        ratio(Some(m.load.rate()), floor.map(|f| f.load.rate())),
                        ratio(
                            Some(m.load.percentile(99.0) as f64),
                            floor.map(|f| f.load.percentile(99.0) as f64),
                        ),
                        ratio(cpu, floor.and_then(Measured::cpu_per_request)),
                        ratio(cs, floor.and_then(Measured::context_switches_per_request)),
                        format!("{:.1}", m.generator_cpu_per_request()),
                    ]);
                }
            }
            let mut extra = row.extra.clone();
            extra.resize(self.extra_columns.len(), String::new());
            cells.extend(extra);
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

/// A table whose rows are not servers (e.g. one row per thread role of
/// one server): a header and cells, printed as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    /// Heading.
    pub title: String,
    /// What the reader needs to read it, printed under the heading.
    pub notes: Vec<String>,
    /// Column headings; the first names the rows.
    pub header: Vec<String>,
    /// One row of cells per line (short rows are padded).
    pub rows: Vec<Vec<String>>,
}

impl Grid {
    /// The grid in markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "| {} |", self.header.join(" | "));
        let _ = writeln!(
            out,
            "| --- |{}",
            " ---: |".repeat(self.header.len().saturating_sub(1))
        );
        for row in &self.rows {
            let mut cells = row.clone();
            cells.resize(self.header.len(), String::new());
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

/// A target the issue states, with where a table puts us.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What is asked, with its bound.
    pub name: String,
    /// What was measured, as it reads in the targets table.
    pub measured: String,
    /// Whether it was met; `None` when it could not be measured.
    pub met: Option<bool>,
}

impl Target {
    /// The target as a row of the targets table.
    pub fn markdown_row(&self) -> String {
        let met = match self.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        format!("| {} | {} | {met} |", self.name, self.measured)
    }
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Requests per second: whole numbers, but decimals for the slow rates of
/// big-number workloads, where rounding would hide the comparison.
pub fn rate(per_second: f64) -> String {
    if per_second < 100.0 {
        format!("{per_second:.2}")
    } else {
        format!("{per_second:.0}")
    }
}

/// A latency in microseconds, in the most readable unit.
pub fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} us")
    }
}

/// One point of the concurrency sweep.
#[derive(Debug, Clone)]
pub struct SweepPoint {
    /// Which server.
    pub kind: Kind,
    /// Client connections at once.
    pub concurrency: usize,
    /// p50, p90, p99 in microseconds.
    pub percentiles: [u64; 3],
}

/// Draws p50 and p99 against concurrency, one colour per server.
///
/// # Errors
///
/// The SVG could not be written.
pub fn chart(points: &[SweepPoint], title: &str, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let max_c = points.iter().map(|p| p.concurrency).max().unwrap_or(1) as f64;
    let max_us = points
        .iter()
        .map(|p| p.percentiles[2])
        .max()
        .unwrap_or(1)
        .max(10) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0.8f64..max_c * 1.25).log_scale(),
            (5.0f64..max_us * 2.0).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("concurrent connections")
        .y_desc("latency (us, log scale)")
        .draw()
        .map_err(plot_error)?;
    let mut kinds: Vec<Kind> = points.iter().map(|p| p.kind).collect();
    kinds.dedup();
    for (i, kind) in kinds.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        for (index, (label, width)) in [("p50", 1), ("p99", 3)].into_iter().enumerate() {
            let percentile = if index == 0 { 0 } else { 2 };
            let series: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.kind == *kind)
                .map(|p| {
                    (
                        p.concurrency as f64,
                        p.percentiles[percentile].max(1) as f64,
                    )
                })
                .collect();
            chart
                .draw_series(LineSeries::new(series.clone(), color.stroke_width(width)))
                .map_err(plot_error)?
                .label(format!("{} {label}", kind.name()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
                });
            chart
                .draw_series(
                    series
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                )
                .map_err(plot_error)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the chart: {e}")
}
