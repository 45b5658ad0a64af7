//! `cargo xtask bench --ops`: what an operator sizes and runs a deployment by, in one run.
//!
//! - the release binary's size on disk;
//! - time from exec to ready (the first `GET /health` answered; polled every 2 ms);
//! - resident memory idle (one second after ready) and its high-water mark after a peak of
//!   `POST /passwordless/start`;
//! - what metrics cost: the peak start rate, and the p99 of starts paced to half the first
//!   peak, with `metrics = true` and with `metrics = false`. Each round runs both on fresh
//!   servers, in alternating order (the machine's speed drifts); the summary takes medians.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Ctx, Options, WrkResult, check_start, ms, percent, report_header, rss_kb};

/// One server's figures.
#[derive(Debug)]
pub(super) struct OpsRow {
    round: u32,
    metrics: bool,
    ready: Duration,
    idle_rss_kb: u64,
    peak_rss_kb: u64,
    peak: WrkResult,
    paced: WrkResult,
}

#[derive(Debug)]
pub(super) struct OpsReport {
    rows: Vec<OpsRow>,
    target: f64,
    binary_bytes: u64,
    busy_before: Option<f64>,
}

pub(super) fn ops_phases(ctx: &Ctx, rounds: u32) -> anyhow::Result<OpsReport> {
    let plan = &ctx.plan;
    let busy_before = super::cpu_busy(Duration::from_secs(1));
    let binary_bytes = std::fs::metadata(&ctx.binary).map(|m| m.len()).unwrap_or(0);
    let mut rows = Vec::new();
    let mut delay_ms = None;
    let mut target = 0.0;
    for round in 0..rounds {
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for metrics in order {
            let label = if metrics { "on" } else { "off" };
            eprintln!("xtask: round {}/{rounds}, metrics {label}", round + 1);
            let top = if metrics { "metrics = true\n" } else { "metrics = false\n" };
            let server = ctx.server_top(&format!("ops-{round}-{label}"), top)?;
            let ready = server.ready_after;
            std::thread::sleep(Duration::from_secs(1));
            let (idle_rss_kb, _) = rss_kb(server.child.id());
            check_start(&server, &format!("bench-{}-ops{round}{label}@example.com", ctx.run_id))?;
            let prefix = format!("ops{round}{label}");
            let peak = ctx.wrk(
                "start.lua",
                &server,
                plan.connections,
                plan.round,
                &[("BENCH_PREFIX", format!("{prefix}peak"))],
            )?;
            let (_, peak_rss_kb) = rss_kb(server.child.id());
            let delay = match delay_ms {
                Some(d) => d,
                None => {
                    target = peak.rps() / 2.0;
                    let (_, d) = ctx.pace(&server, target, &format!("{prefix}probe"))?;
                    delay_ms = Some(d);
                    d
                }
            };
            let paced = ctx.paced_run(&server, delay, plan.half, &format!("{prefix}half"))?;
            drop(server);
            rows.push(OpsRow { round, metrics, ready, idle_rss_kb, peak_rss_kb, peak, paced });
        }
    }
    Ok(OpsReport { rows, target, binary_bytes, busy_before })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

impl OpsReport {
    pub(super) fn render(&self, ctx: &Ctx, opts: &Options, wrk: &str, elapsed: Duration) -> String {
        let mut s = report_header(ctx, opts, wrk, self.busy_before, elapsed);
        let mb = |kb: u64| kb as f64 / 1024.0;
        let _ = writeln!(s, "Release binary: {:.1} MB ({} bytes)\n", self.binary_bytes as f64 / 1e6, self.binary_bytes);
        let _ = writeln!(
            s,
            "| round | metrics | exec → ready | idle RSS | RSS high-water after peak | peak start req/s | paced p99 ({:.0}/s) | paced req/s | errors | other CPU |",
            self.target
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} ms | {:.1} MB | {:.1} MB | {:.0} | {} | {:.0} | {} | {} |",
                r.round + 1,
                if r.metrics { "on" } else { "off" },
                r.ready.as_secs_f64() * 1000.0,
                mb(r.idle_rss_kb),
                mb(r.peak_rss_kb),
                r.peak.rps(),
                ms(r.paced.p99_us),
                r.paced.rps(),
                r.peak.non_2xx + r.peak.socket_errors + r.paced.non_2xx + r.paced.socket_errors,
                percent(r.paced.other_cpu),
            );
        }
        let med = |metrics: bool, f: &dyn Fn(&OpsRow) -> f64| {
            median(self.rows.iter().filter(|r| r.metrics == metrics).map(f).collect())
        };
        let p99 = |r: &OpsRow| r.paced.p99_us as f64;
        let peak = |r: &OpsRow| r.peak.rps();
        let ready = |r: &OpsRow| r.ready.as_secs_f64() * 1000.0;
        let _ = writeln!(s, "\nMedians over the rounds:\n");
        let _ = writeln!(s, "| figure | metrics on | metrics off | on / off |");
        let _ = writeln!(s, "|---|---|---|---|");
        for (name, f, unit) in [
            ("paced start p99", &p99 as &dyn Fn(&OpsRow) -> f64, "µs"),
            ("peak start req/s", &peak, "req/s"),
            ("exec → ready", &ready, "ms"),
        ] {
            let (on, off) = (med(true, f), med(false, f));
            let _ =
                writeln!(s, "| {name} | {on:.1} {unit} | {off:.1} {unit} | {:.3} |", on / off.max(f64::MIN_POSITIVE));
        }
        let idle = median(self.rows.iter().map(|r| mb(r.idle_rss_kb)).collect());
        let high = median(self.rows.iter().map(|r| mb(r.peak_rss_kb)).collect());
        let _ = writeln!(s, "\nIdle RSS {idle:.1} MB; RSS high-water after the start peak {high:.1} MB (medians).");
        s
    }
}
