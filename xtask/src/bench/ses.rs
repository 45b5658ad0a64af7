//! `cargo xtask bench --ses-outage`: start latency with `email = "ses"` while the provider fails.
//!
//! The local AWS emulator (moto, `tests/aws/moto.sh`) plays SES. Every phase is a fresh
//! `sesame serve` whose `[ses] endpoint_url` points at the emulator (or at a slow proxy in front
//! of it), paced at one fixed rate of `POST /passwordless/start`, in this order:
//!
//! 1. up: the emulator answers;
//! 2. slowed: `xtask/bench/delay_proxy.py` adds `--ses-delay-ms` to every SES response;
//! 3. up again: as 1, to show how much p99 moves between two identical phases;
//! 4. frozen: the emulator is stopped with SIGSTOP: connections are accepted, never answered;
//! 5. stopped: the emulator is killed: connections are refused.
//!
//! The five phases run `--ses-rounds` times (a fresh emulator each round); the summary gives
//! each phase's median, since a p99 of a few milliseconds moves a lot between identical phases.
//!
//! Delivery runs in the outbox worker, off the request path, so the start's p99 should not move
//! by more than 10 % (issue 5). The emulator's send count shows that delivery went on (or not).

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use super::{Ctx, Http, Options, WrkResult, check_start, free_port, ms, percent, report_header};
use crate::{root, run};

/// The region the sender and the emulator use.
pub(super) const REGION: &str = "us-east-1";
/// The verified sending domain created in the emulator.
const DOMAIN: &str = "bench.example.com";
/// A p99 that rises by more than this in an outage misses issue 5's requirement (a fall is
/// reported too).
const TOLERANCE: f64 = 0.10;

/// Where a server's SES client sends.
#[derive(Debug)]
pub(super) struct SesTarget {
    endpoint: String,
}

impl SesTarget {
    /// The `[ses]` table of the server's config.
    pub(super) fn table(&self) -> String {
        format!(
            "\n[ses]\nregion = \"{REGION}\"\nendpoint_url = \"{}\"\nfrom_address = \"no-reply@{DOMAIN}\"\n",
            self.endpoint
        )
    }
}

/// `tests/aws/moto.sh install` (idempotent, quick when present). Its output goes to stderr:
/// stdout is the report's.
pub(super) fn install_moto() -> anyhow::Result<()> {
    run(Command::new("bash").args(["tests/aws/moto.sh", "install"]).stdout(std::io::stderr()))
}

fn venv_python() -> std::path::PathBuf {
    root().join(".venv-moto").join("bin").join("python")
}

/// The emulator, started by `tests/aws/moto.sh start`; killed (by its PID) when dropped.
#[derive(Debug)]
struct Moto {
    pid: u32,
    addr: SocketAddr,
    alive: bool,
}

impl Moto {
    fn start(ctx: &Ctx) -> anyhow::Result<Self> {
        let port = free_port()?;
        let out = Command::new("bash")
            .args(["tests/aws/moto.sh", "start", &port.to_string()])
            .env("MOTO_LOG", ctx.work.join("moto.log"))
            .current_dir(root())
            .stderr(Stdio::inherit())
            .output()
            .context("running tests/aws/moto.sh start")?;
        ensure!(out.status.success(), "tests/aws/moto.sh start {port} failed ({})", out.status);
        let pid: u32 =
            String::from_utf8_lossy(&out.stdout).trim().parse().context("tests/aws/moto.sh start printed no PID")?;
        let moto = Self { pid, addr: SocketAddr::from(([127, 0, 0, 1], port)), alive: true };
        let status = Command::new(venv_python())
            .arg(root().join("xtask").join("bench").join("ses_identity.py"))
            .arg(moto.endpoint())
            .arg(DOMAIN)
            .stdout(std::io::stderr())
            .status()
            .context("running xtask/bench/ses_identity.py")?;
        ensure!(status.success(), "creating the SES identity in the emulator failed ({status})");
        Ok(moto)
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid.to_string()).status()?;
        ensure!(status.success(), "kill -{signal} {} failed ({status})", self.pid);
        Ok(())
    }

    /// Kills it and waits until its port refuses connections.
    fn stop(&mut self) -> anyhow::Result<()> {
        self.signal("KILL")?;
        self.alive = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
            ensure!(Instant::now() < deadline, "the emulator still accepts connections 10 s after SIGKILL");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Emails the emulator has accepted so far (SES v1 `GetSendQuota`, which moto keeps for v2
    /// sends too; it checks no signature).
    fn sent(&self) -> anyhow::Result<u64> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/ses/aws4_request, SignedHeaders=host, Signature=0"
        );
        let (status, body) = Http::new(self.addr).call_with(
            "POST",
            "/",
            Some(("application/x-www-form-urlencoded", "Action=GetSendQuota&Version=2010-12-01")),
            &[("Authorization", &auth)],
        )?;
        ensure!(status == 200, "GetSendQuota answered {status}: {body}");
        let value = body
            .split("<SentLast24Hours>")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .with_context(|| format!("no SentLast24Hours in {body}"))?;
        Ok(value.parse::<f64>()? as u64)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if self.alive {
            let _ = self.signal("KILL");
        }
    }
}

/// `delay_proxy.py` in front of the emulator; killed when dropped.
#[derive(Debug)]
struct DelayProxy {
    child: Child,
    port: u16,
}

impl DelayProxy {
    fn start(upstream: SocketAddr, delay_ms: u64) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut child = Command::new(venv_python())
            .arg(root().join("xtask").join("bench").join("delay_proxy.py"))
            .arg(port.to_string())
            .arg(upstream.to_string())
            .arg(delay_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting xtask/bench/delay_proxy.py")?;
        let stdout = child.stdout.take().context("no stdout from the proxy")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            bail!("delay_proxy.py did not start (it printed {line:?})");
        }
        Ok(Self { child, port })
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Up,
    Slowed,
    UpAgain,
    Frozen,
    Stopped,
}

impl Scenario {
    const ALL: [Self; 5] = [Self::Up, Self::Slowed, Self::UpAgain, Self::Frozen, Self::Stopped];

    fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Slowed => "slowed",
            Self::UpAgain => "up again",
            Self::Frozen => "frozen",
            Self::Stopped => "stopped",
        }
    }

    fn describe(self, delay_ms: u64) -> String {
        match self {
            Self::Up => "answers directly".into(),
            Self::Slowed => format!("behind a proxy that adds {delay_ms} ms to every response"),
            Self::UpAgain => "answers directly (the same as the first phase)".into(),
            Self::Frozen => "SIGSTOP: connections accepted, never answered".into(),
            Self::Stopped => "killed: connections refused".into(),
        }
    }

    fn is_outage(self) -> bool {
        matches!(self, Self::Slowed | Self::Frozen | Self::Stopped)
    }
}

#[derive(Debug)]
struct SesRow {
    round: u32,
    scenario: Scenario,
    result: WrkResult,
    /// Starts the phase made: the check, the probe and the measured run.
    started: u64,
    /// Emails the emulator accepted meanwhile (when it was running).
    delivered: Option<u64>,
}

/// One window of the long outage.
#[derive(Debug)]
struct LongWindow {
    from: u64,
    to: u64,
    result: WrkResult,
    /// Messages waiting in the outbox at the window's end (Postgres store).
    pending: Option<u64>,
}

#[derive(Debug)]
pub(super) struct SesReport {
    rows: Vec<SesRow>,
    long: Vec<LongWindow>,
    long_secs: u64,
    rate: f64,
    delay_ms: u64,
    busy_before: Option<f64>,
}

/// The phases of `--ses-outage`, in order, each on a fresh server; a fresh emulator per round.
pub(super) fn outage_phases(ctx: &Ctx, opts: &Options) -> anyhow::Result<SesReport> {
    let busy_before = super::cpu_busy(Duration::from_secs(1));
    let rate = opts.ses_rate;
    let length = ctx.plan.ses_phase;
    let rounds = ctx.plan.ses_rounds;
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let mut moto = Moto::start(ctx)?;
        for (i, scenario) in Scenario::ALL.into_iter().enumerate() {
            let proxy = match scenario {
                Scenario::Slowed => Some(DelayProxy::start(moto.addr, opts.ses_delay_ms)?),
                _ => None,
            };
            match scenario {
                Scenario::Frozen => moto.signal("STOP")?,
                Scenario::Stopped => moto.stop()?,
                _ => {}
            }
            let endpoint = match &proxy {
                Some(p) => format!("http://127.0.0.1:{}", p.port),
                None => moto.endpoint(),
            };
            eprintln!(
                "xtask: round {round}/{rounds}, phase {}/{}: SES {}: POST /passwordless/start paced to {rate:.0} req/s \
                 for {}s",
                i + 1,
                Scenario::ALL.len(),
                scenario.name(),
                length.as_secs()
            );
            let name = format!("ses-{round}-{}", scenario.name().replace(' ', "-"));
            let mut server = ctx.server_with(&name, Some(&SesTarget { endpoint }))?;
            if moto.alive && scenario != Scenario::Frozen {
                server.helpers.push(moto.pid);
            }
            if let Some(p) = &proxy {
                server.helpers.push(p.child.id());
            }
            let counting = matches!(scenario, Scenario::Up | Scenario::Slowed | Scenario::UpAgain);
            let before = if counting { Some(moto.sent()?) } else { None };
            check_start(&server, &format!("bench-{}-{}-check@example.com", ctx.run_id, name))?;
            let (probe, result) = ctx.paced_start_probed(&server, rate, length, &name)?;
            let delivered = match before {
                Some(b) => Some(moto.sent()?.saturating_sub(b)),
                None => None,
            };
            drop(server);
            drop(proxy);
            rows.push(SesRow { round, scenario, result, started: 1 + probe.requests + result.requests, delivered });
        }
    }
    let long = long_outage(ctx, rate)?;
    Ok(SesReport { rows, long, long_secs: ctx.plan.ses_long.as_secs(), rate, delay_ms: opts.ses_delay_ms, busy_before })
}

/// One server whose provider refuses connections for `--ses-long-secs`, in 6 windows: how the
/// API fares as the outbox fills up.
fn long_outage(ctx: &Ctx, rate: f64) -> anyhow::Result<Vec<LongWindow>> {
    const WINDOWS: u64 = 6;
    let window = ctx.plan.ses_long.as_secs() / WINDOWS;
    if window == 0 {
        return Ok(Vec::new());
    }
    // Nothing listens on a port just given back: connections are refused.
    let endpoint = format!("http://127.0.0.1:{}", free_port()?);
    eprintln!(
        "xtask: long outage: POST /passwordless/start paced to {rate:.0} req/s for {WINDOWS} × {window}s, the provider \
         refusing connections"
    );
    let server = ctx.server_with("ses-long-stopped", Some(&SesTarget { endpoint }))?;
    check_start(&server, &format!("bench-{}-ses-long-check@example.com", ctx.run_id))?;
    let (_, delay_ms) = ctx.pace(&server, rate, "ses-long")?;
    let mut windows = Vec::new();
    for w in 0..WINDOWS {
        let result = ctx.paced_run(&server, delay_ms, Duration::from_secs(window), &format!("ses-long{w}"))?;
        let pending = match (&ctx.pg, &server.db) {
            (Some(pg), Some(db)) => Some(pg.pending(db)?),
            _ => None,
        };
        windows.push(LongWindow { from: w * window, to: (w + 1) * window, result, pending });
    }
    Ok(windows)
}

/// CPU seconds as a percentage of one core over the run.
fn share(cpu_s: f64, r: &WrkResult) -> f64 {
    cpu_s / (r.duration_us.max(1) as f64 / 1e6) * 100.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

impl SesReport {
    pub(super) fn render(&self, ctx: &Ctx, opts: &Options, wrk: &str, elapsed: Duration) -> String {
        let mut s = report_header(ctx, opts, wrk, self.busy_before, elapsed);
        let p99s = |f: &dyn Fn(Scenario) -> bool| -> Vec<f64> {
            self.rows.iter().filter(|r| f(r.scenario)).map(|r| r.result.p99_us as f64).collect()
        };
        // Healthy: every phase where the emulator answers directly (up, up again).
        let healthy_p99s = p99s(&|sc| !sc.is_outage());
        let healthy = median(healthy_p99s.clone()).max(1.0);
        let _ = writeln!(
            s,
            "Each phase's median over {} round(s); p99 ÷ healthy divides by the median p99 of every phase with the \
             emulator up ({} of them).\n",
            self.rows.iter().map(|r| r.round).max().unwrap_or(0),
            healthy_p99s.len()
        );
        let _ = writeln!(
            s,
            "| phase | the emulator | paced to | p50 (median) | p99 (median) | p99 of each round | p99 ÷ healthy | sesame CPU (median) | emails it accepted / starts made |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---|---:|---:|---:|");
        for scenario in Scenario::ALL {
            let rows: Vec<&SesRow> = self.rows.iter().filter(|r| r.scenario == scenario).collect();
            let p50 = median(rows.iter().map(|r| r.result.p50_us as f64).collect());
            let p99 = median(rows.iter().map(|r| r.result.p99_us as f64).collect());
            let each: Vec<String> = rows.iter().map(|r| ms(r.result.p99_us)).collect();
            let cpu = median(rows.iter().map(|r| share(r.result.server_cpu_s, &r.result)).collect());
            let delivered: Option<u64> = rows.iter().map(|r| r.delivered).sum();
            let started: u64 = rows.iter().map(|r| r.started).sum();
            let _ = writeln!(
                s,
                "| SES {} | {} | {:.0}/s | {} | {} | {} | {:.2} | {cpu:.0} % of a core | {} |",
                scenario.name(),
                scenario.describe(self.delay_ms),
                self.rate,
                ms(p50 as u64),
                ms(p99 as u64),
                each.join(", "),
                p99 / healthy,
                delivered.map_or_else(|| format!("— / {started}"), |n| format!("{n} / {started}")),
            );
        }
        let changes: Vec<(Scenario, f64)> = Scenario::ALL
            .into_iter()
            .filter(|sc| sc.is_outage())
            .map(|sc| (sc, median(p99s(&|x| x == sc)) / healthy - 1.0))
            .collect();
        let rise = changes.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
        let widest = changes.iter().copied().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
        let (low, high) = healthy_p99s.iter().fold((f64::MAX, 0.0_f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        if let (Some((up_scenario, up)), Some((wide_scenario, wide))) = (rise, widest) {
            let _ = writeln!(
                s,
                "\nHealthy p99 (median): {}; the healthy phases ranged from {} to {}. Largest rise of a median p99 in \
                 an outage: {} (the requirement: at most +{:.0} %: **{}**). Largest change either way: {:+.0} % (SES \
                 {}), within ±{:.0} %: {}.",
                ms(healthy as u64),
                ms(low as u64),
                ms(high as u64),
                if up > 0.0 { format!("{:+.0} % (SES {})", up * 100.0, up_scenario.name()) } else { "none".into() },
                TOLERANCE * 100.0,
                if up <= TOLERANCE { "met" } else { "missed" },
                wide * 100.0,
                wide_scenario.name(),
                TOLERANCE * 100.0,
                if wide.abs() <= TOLERANCE { "yes" } else { "no" },
            );
        }
        if let Some(last) = self.long.last() {
            let _ = writeln!(
                s,
                "\nLong outage: one server, its provider refusing connections for {} s (after a {} s probe), paced \
                 to {:.0}/s:\n",
                self.long_secs,
                ctx.plan.probe.as_secs(),
                self.rate
            );
            let _ = writeln!(
                s,
                "| window | requests | p50 | p99 | p99 ÷ healthy | non-2xx | sesame CPU | other CPU | outbox pending at its end |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            for w in &self.long {
                let r = &w.result;
                let _ = writeln!(
                    s,
                    "| {}–{} s | {} | {} | {} | {:.2} | {} | {:.0} % | {} | {} |",
                    w.from,
                    w.to,
                    r.requests,
                    ms(r.p50_us),
                    ms(r.p99_us),
                    r.p99_us as f64 / healthy,
                    r.non_2xx + r.socket_errors,
                    share(r.server_cpu_s, r),
                    percent(r.other_cpu),
                    w.pending.map_or_else(|| "—".to_owned(), |n| n.to_string()),
                );
            }
            let worst = self.long.iter().map(|w| w.result.p99_us as f64 / healthy).fold(0.0_f64, f64::max);
            let _ = writeln!(
                s,
                "\nIn the long outage p99 reached {:.2} × healthy, {:.2} × in the last window (at most {:.2}: **{}**).",
                worst,
                last.result.p99_us as f64 / healthy,
                1.0 + TOLERANCE,
                if worst <= 1.0 + TOLERANCE { "met" } else { "missed" }
            );
        }
        let _ = writeln!(s, "\nEvery phase:\n");
        let _ = writeln!(
            s,
            "| round | phase | s | requests | reached req/s | p50 | p99 | non-2xx | socket errors | sesame CPU | emulator + proxy CPU | other CPU | emails it accepted / starts made |"
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let r = &row.result;
            let _ = writeln!(
                s,
                "| {} | SES {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {:.0} % | {:.0} % | {} | {} |",
                row.round,
                row.scenario.name(),
                r.duration_us as f64 / 1e6,
                r.requests,
                r.rps(),
                ms(r.p50_us),
                ms(r.p99_us),
                r.non_2xx,
                r.socket_errors,
                share(r.server_cpu_s, r),
                share(r.helper_cpu_s, r),
                percent(r.other_cpu),
                row.delivered.map_or_else(|| format!("— / {}", row.started), |n| format!("{n} / {}", row.started)),
            );
        }
        let results = || self.rows.iter().map(|r| &r.result).chain(self.long.iter().map(|w| &w.result));
        let noisy = results().filter_map(|r| r.other_cpu).fold(0.0_f64, f64::max);
        if noisy > super::NOISY {
            let _ = writeln!(
                s,
                "**Noisy run**: other processes took up to {:.0} % of the CPUs during a phase (\"other CPU\"); \
                 compare runs whose phases all stay under {:.0} %.",
                noisy * 100.0,
                super::NOISY * 100.0
            );
        }
        let bad: u64 = results().map(|r| r.non_2xx + r.socket_errors).sum();
        let _ = writeln!(
            s,
            "{}",
            if bad == 0 {
                "Clean: no non-2xx response, no socket error."
            } else {
                "**Not a clean run**: see non-2xx / socket errors."
            }
        );
        s
    }
}
