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
    /// The merged rounds, or why there are none.
    pub outcome: Result<Measured, String>,
}

/// What was measured for one server.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The generator's view.
    pub load: LoadResult,
    /// Server CPU time over the measured rounds.
    pub server_cpu: Duration,
    /// Server context switches (all threads, voluntary and not) over the
    /// measured rounds; `None` when /proc could not be read.
    pub server_context_switches: Option<u64>,
    /// Server peak RSS in KiB.
    pub peak_rss_kib: Option<u64>,
}

impl Measured {
    /// Server CPU microseconds per answered request.
    pub fn cpu_per_request(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.load.requests.max(1) as f64
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
    /// One row per server.
    pub rows: Vec<Row>,
}

impl Table {
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
            .filter(|(_, m)| m.load.requests > 0)
            .min_by(|a, b| a.1.cpu_per_request().total_cmp(&b.1.cpu_per_request()))
    }

    /// The table in markdown, with ratios to the cheapest floor.
    pub fn markdown(&self) -> String {
        let cheapest = self.cheapest_floor();
        let floor = cheapest.map(|(_, m)| m);
        let mut out = format!("### {}\n\n", self.title);
        if let Some((kind, _)) = cheapest {
            let _ = writeln!(
                out,
                "Ratios \"vs floor\" are against the cheapest floor by server CPU per request: {}.\n",
                kind.name()
            );
        }
        out.push_str("| server | req/s | p50 | p99 | max | server CPU us/req | server cs/req | peak RSS | errors | wrong | req/s vs floor | p99 vs floor | CPU/req vs floor | cs/req vs floor | load gen CPU us/req |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for row in &self.rows {
            match &row.outcome {
                Err(why) => {
                    let _ = writeln!(
                        out,
                        "| {} | n/a: {why} | | | | | | | | | | | | | |",
                        row.kind.name()
                    );
                }
                Ok(m) => {
                    let ratio = |ours: f64, theirs: Option<f64>| {
                        theirs
                            .filter(|t| *t > 0.0)
                            .map_or("-".to_owned(), |t| format!("{:.2}x", ours / t))
                    };
                    let cs = m.context_switches_per_request();
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                        row.kind.name(),
                        rate(m.load.rate()),
                        micros(m.load.percentile(50.0)),
                        micros(m.load.percentile(99.0)),
                        micros(m.load.latency.max()),
                        m.cpu_per_request(),
                        cs.map_or("?".to_owned(), |c| format!("{c:.2}")),
                        m.peak_rss_kib
                            .map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                        m.load.errors,
                        m.load.wrong,
                        ratio(m.load.rate(), floor.map(|f| f.load.rate())),
                        ratio(
                            m.load.percentile(99.0) as f64,
                            floor.map(|f| f.load.percentile(99.0) as f64)
                        ),
                        ratio(m.cpu_per_request(), floor.map(Measured::cpu_per_request)),
                        cs.map_or("-".to_owned(), |c| ratio(
                            c,
                            floor.and_then(Measured::context_switches_per_request)
                        )),
                        m.generator_cpu_per_request(),
                    );
                }
            }
        }
        out
    }
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
