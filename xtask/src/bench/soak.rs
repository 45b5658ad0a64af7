//! `cargo xtask soak --minutes N`: a long, steady, mixed load, watched for drift.
//!
//! 1. Peak: on a fresh `sesame serve` (release build, as the bench starts it), `--workers`
//!    threads run whole logins as fast as they can for `--peak-secs`: `POST /passwordless/start`,
//!    the code read back from `GET /dev/mailbox?to=…`, `POST /oauth/token` with it. Logins per
//!    second completed is the peak.
//! 2. Soak: on another fresh server, the same logins paced to half that peak (or `--rate`),
//!    spread evenly over the workers, for `--minutes`, counted in windows of `--window-secs`.
//!
//! Identities come from a fixed pool (at least 20 000, more than the mailbox keeps, so a
//! mailbox entry is always the newest code; at least 100 s of load), so the store holds a steady
//! set of users and what grows is what leaks. Per window: logins, errors by kind, p50/p99 of the
//! start and the exchange (from sending the request), p99 of the delivery (start answered → code
//! in the mailbox), logins begun more than 100 ms behind their schedule, the server's RSS and CPU.
//! A failed login, or a window that completes under 90 % of the rate asked, fails the command
//! after the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use super::{
    Ctx, Http, LIMITS, Options, Plan, Server, Store, number, proc_ticks, read_extra_config, start_body, token_body,
};

const USAGE: &str = "usage: cargo xtask soak [--minutes N] [--window-secs N] [--workers N] [--peak-secs N] [--rate N]
                      [--redis] [--store postgres [--pg-url URL] [--pool-size N]] [--config extra.toml]
  --minutes N       length of the soak (default 10)
  --window-secs N   one row of the report per window (default 60)
  --workers N       threads, each running one login at a time (default 32)
  --peak-secs N     length of the unpaced peak measured first (default 20)
  --rate N          logins per second to hold instead of half the measured peak (no peak phase)
  --redis           rate limits (and the replay guard) in Redis at 127.0.0.1:6379, under a key
                    prefix of this run
  --store postgres  the store in a fresh Postgres database per server (as cargo xtask bench)
  --config FILE     TOML added to the server config (not `listen`, `log_format`, `dev_mailbox`,
                    `[limits]`)";

/// Identities in the pool at least: twice what the development mailbox keeps (10 000).
const MIN_POOL: usize = 20_000;
/// How long a login waits for its code in the mailbox.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Each window must complete at least this share of the paced rate.
const HELD: f64 = 0.9;
/// A login begun later than this after its slot counts as late.
const LATE: Duration = Duration::from_millis(100);

struct SoakOptions {
    minutes: u64,
    window: Duration,
    workers: usize,
    peak: Duration,
    rate: Option<f64>,
    redis: bool,
    bench: Options,
}

impl SoakOptions {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let (mut minutes, mut window, mut workers, mut peak, mut rate, mut redis) = (10, 60, 32, 20, None, false);
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--minutes" => minutes = number(&mut it, "--minutes")?,
                "--window-secs" => window = number(&mut it, "--window-secs")?,
                "--workers" => workers = number(&mut it, "--workers")?,
                "--peak-secs" => peak = number(&mut it, "--peak-secs")?,
                "--rate" => rate = Some(number::<f64>(&mut it, "--rate")?),
                "--redis" => redis = true,
                "--store" | "--pg-url" | "--pool-size" | "--config" => {
                    rest.push(arg.clone());
                    rest.push(it.next().with_context(|| format!("{arg} needs a value"))?.clone());
                }
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        ensure!(minutes >= 1, "--minutes must be at least 1");
        ensure!(window >= 1, "--window-secs must be at least 1");
        ensure!(workers >= 1, "--workers must be at least 1");
        ensure!(peak >= 1, "--peak-secs must be at least 1");
        ensure!(rate.is_none_or(|r| r > 0.0), "--rate must be above 0");
        let bench = Options::parse(&rest)?;
        Ok(Self {
            minutes,
            window: Duration::from_secs(window),
            workers,
            peak: Duration::from_secs(peak),
            rate,
            redis,
            bench,
        })
    }

    fn command(&self) -> String {
        let mut c = format!(
            "cargo xtask soak --minutes {} --window-secs {} --workers {}",
            self.minutes,
            self.window.as_secs(),
            self.workers
        );
        match self.rate {
            Some(rate) => {
                let _ = write!(c, " --rate {rate}");
            }
            None => {
                let _ = write!(c, " --peak-secs {}", self.peak.as_secs());
            }
        }
        if self.redis {
            c.push_str(" --redis");
        }
        if self.bench.store == Store::Postgres {
            let _ = write!(c, " --store postgres --pool-size {}", self.bench.pool_size);
        }
        if let Some(path) = &self.bench.extra_config {
            let _ = write!(c, " --config {}", path.display());
        }
        c
    }
}

/// What one window saw.
#[derive(Debug, Default)]
struct Window {
    logins: u64,
    late: u64,
    start_us: Vec<u32>,
    token_us: Vec<u32>,
    delivery_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    /// Sampled by the main thread at the window's end.
    rss_kib: Option<u64>,
    cpu_ticks: Option<u64>,
}

struct Shared {
    began: Instant,
    window: Duration,
    windows: Mutex<Vec<Window>>,
    stop: AtomicBool,
}

impl Shared {
    fn new(windows: usize, window: Duration) -> Self {
        Self {
            began: Instant::now(),
            window,
            windows: Mutex::new((0..windows.max(1)).map(|_| Window::default()).collect()),
            stop: AtomicBool::new(false),
        }
    }

    /// The window a login begun at `at` belongs to (the last one takes the overrun).
    fn record(&self, at: Instant, login: Login, late: bool) {
        let index = (at.duration_since(self.began).as_nanos() / self.window.as_nanos().max(1)) as usize;
        let Ok(mut windows) = self.windows.lock() else { return };
        let last = windows.len() - 1;
        let w = &mut windows[index.min(last)];
        w.late += u64::from(late);
        w.start_us.extend(login.start_us);
        w.token_us.extend(login.token_us);
        w.delivery_us.extend(login.delivery_us);
        match login.error {
            Some(e) => *w.errors.entry(e).or_default() += 1,
            None => w.logins += 1,
        }
    }
}

/// One login's timings, and what went wrong if something did.
#[derive(Debug, Default)]
struct Login {
    start_us: Option<u32>,
    delivery_us: Option<u32>,
    token_us: Option<u32>,
    error: Option<String>,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// `status error` of an Auth0-shaped error body, else the status alone.
fn refusal(step: &str, status: u16, body: &str) -> String {
    let error = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("{step}: {status} {error}").trim_end().to_owned()
}

/// Start, code from the mailbox, exchange.
fn login(http: &mut Http, email: &str) -> Login {
    let mut login = Login::default();
    let sent = Instant::now();
    match http.call("POST", "/passwordless/start", Some(&start_body(email))) {
        Ok((200, _)) => login.start_us = Some(micros(sent.elapsed())),
        Ok((status, body)) => {
            login.error = Some(refusal("start", status, &body));
            return login;
        }
        Err(_) => {
            login.error = Some("start: connection error".into());
            return login;
        }
    }
    let answered = Instant::now();
    let path = format!("/dev/mailbox?to={email}");
    let mut pause = Duration::from_micros(500);
    let code = loop {
        match http.call("GET", &path, None) {
            Ok((200, body)) => {
                let entries: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
                if let Some(code) = entries.first().and_then(|e| e["code"].as_str()) {
                    login.delivery_us = Some(micros(answered.elapsed()));
                    break code.to_owned();
                }
            }
            Ok((status, body)) => {
                login.error = Some(refusal("mailbox", status, &body));
                return login;
            }
            Err(_) => {
                login.error = Some("mailbox: connection error".into());
                return login;
            }
        }
        if answered.elapsed() > DELIVERY_TIMEOUT {
            login.error = Some(format!("no code in the mailbox within {} s", DELIVERY_TIMEOUT.as_secs()));
            return login;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let sent = Instant::now();
    match http.call("POST", "/oauth/token", Some(&token_body(email, &code))) {
        Ok((200, body)) if body.contains("\"access_token\"") => login.token_us = Some(micros(sent.elapsed())),
        Ok((status, body)) => login.error = Some(refusal("token", status, &body)),
        Err(_) => login.error = Some("token: connection error".into()),
    }
    login
}

/// `workers` threads running logins until `shared.stop`, each at `rate / workers` per second
/// when paced. Worker `w` uses identities w, w + workers, w + 2·workers, … of the pool.
fn drive(server: &Server, shared: &Shared, workers: usize, rate: Option<f64>, pool: usize, prefix: &str) {
    std::thread::scope(|scope| {
        for w in 0..workers {
            scope.spawn(move || {
                let mut http = Http::new(server.addr);
                let interval = rate.map(|r| Duration::from_secs_f64(workers as f64 / r));
                let offset = interval.map(|i| i.mul_f64(w as f64 / workers as f64)).unwrap_or_default();
                let mut k: u32 = 0;
                while !shared.stop.load(Ordering::Relaxed) {
                    let mut late = false;
                    if let Some(interval) = interval {
                        let due = shared.began + offset + interval * k;
                        let now = Instant::now();
                        if now < due {
                            std::thread::sleep(due - now);
                            if shared.stop.load(Ordering::Relaxed) {
                                break;
                            }
                        } else {
                            late = now - due > LATE;
                        }
                    }
                    let identity = (w + k as usize * workers) % pool;
                    let email = format!("{prefix}-{identity}@example.com");
                    let at = Instant::now();
                    let outcome = login(&mut http, &email);
                    shared.record(at, outcome, late);
                    k = k.wrapping_add(1);
                }
            });
        }
    });
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn percentile(values: &mut [u32], q: f64) -> Option<u32> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    Some(values[index])
}

fn ms(us: Option<u32>) -> String {
    us.map_or_else(|| "-".to_owned(), |us| format!("{:.2}", f64::from(us) / 1000.0))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

pub(crate) fn soak(args: &[String]) -> anyhow::Result<()> {
    let opts = SoakOptions::parse(args)?;
    let mut owned = opts.bench.owned_keys();
    if opts.redis {
        owned.extend(["rate_limit", "redis"]);
    }
    let extra = match &opts.bench.extra_config {
        Some(path) => Some(read_extra_config(path, &owned)?),
        None => None,
    };
    // Identities are reused (the pool): the per-identifier start bucket is opened wide too.
    let limits = format!("{LIMITS}start_per_identifier = {{ limit = 4000000000, window_secs = 1 }}\n");
    let ctx = Ctx::prepare(&opts.bench, Plan::new(&opts.bench), extra, limits)?;
    let (top, tables) = if opts.redis {
        (
            "rate_limit = \"redis\"\n".to_owned(),
            format!("\n[redis]\nurl = \"redis://127.0.0.1:6379\"\nkey_prefix = \"soak-{}:\"\n", ctx.run_id),
        )
    } else {
        (String::new(), String::new())
    };
    let work = ctx.work.clone();
    let began = Instant::now();
    let text = run_soak(&ctx, &opts, &top, &tables)
        .with_context(|| format!("soak failed; configs and logs are in {}", work.display()))?;
    let took = began.elapsed();
    let mut out = std::io::stdout().lock();
    out.write_all(text.report.as_bytes())?;
    writeln!(out, "(the whole run took {:.0} s)", took.as_secs_f64())?;
    if !text.problems.is_empty() {
        bail!("the soak failed: {}; logs are in {}", text.problems.join("; "), work.display());
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

struct Outcome {
    report: String,
    /// Failed logins, windows that fell below the rate: what fails the command.
    problems: Vec<String>,
}

fn run_soak(ctx: &Ctx, opts: &SoakOptions, top: &str, tables: &str) -> anyhow::Result<Outcome> {
    let mut report = String::new();
    let _ = writeln!(report, "\n# {}", opts.command());
    let _ = writeln!(
        report,
        "store: {}; rate limits: {}; {} workers, each one login at a time (start, code from /dev/mailbox, exchange)",
        if ctx.pg.is_some() { "postgres" } else { "memory (embedded)" },
        if opts.redis { "redis" } else { "memory" },
        opts.workers
    );

    let rate = match opts.rate {
        Some(rate) => rate,
        None => {
            let server = ctx.server_full("soak-peak", None, top, tables)?;
            let shared = Shared::new(1, opts.peak + Duration::from_secs(3600));
            let pool = pool_size(opts.workers, 0.0);
            std::thread::scope(|scope| {
                scope.spawn(|| drive(&server, &shared, opts.workers, None, pool, &format!("peak-{}", ctx.run_id)));
                std::thread::sleep(opts.peak);
                shared.stop.store(true, Ordering::Relaxed);
            });
            let secs = shared.began.elapsed().as_secs_f64();
            let windows = shared.windows.into_inner().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
            let w = &windows[0];
            let errors: u64 = w.errors.values().sum();
            ensure!(errors == 0, "the peak phase saw failed logins: {:?}", w.errors);
            let peak = w.logins as f64 / secs;
            ensure!(peak >= 1.0, "the peak phase completed {} logins in {secs:.0} s", w.logins);
            let _ = writeln!(
                report,
                "peak: {peak:.0} logins/s unpaced over {secs:.0} s ({} logins, start p99 {} ms, token p99 {} ms)",
                w.logins,
                ms(percentile(&mut w.start_us.clone(), 0.99)),
                ms(percentile(&mut w.token_us.clone(), 0.99)),
            );
            peak / 2.0
        }
    };
    let pool = pool_size(opts.workers, rate);
    let total = Duration::from_secs(opts.minutes * 60);
    let count = total.as_nanos().div_ceil(opts.window.as_nanos()) as usize;
    let _ = writeln!(
        report,
        "soak: {rate:.0} logins/s ({:.0} requests/s of start and exchange) for {} min, {pool} identities\n",
        rate * 2.0,
        opts.minutes
    );

    let server = ctx.server_full("soak", None, top, tables)?;
    let pid = server.child.id();
    let rss_idle = rss_kib(pid);
    let ticks_idle = proc_ticks(&format!("/proc/{pid}/stat"), false);
    let shared = Shared::new(count, opts.window);
    let mut samples = Vec::with_capacity(count);
    std::thread::scope(|scope| {
        scope.spawn(|| drive(&server, &shared, opts.workers, Some(rate), pool, &format!("soak-{}", ctx.run_id)));
        for i in 1..=count {
            let end = shared.began + (opts.window * i as u32).min(total);
            if let Some(wait) = end.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            samples.push((rss_kib(pid), proc_ticks(&format!("/proc/{pid}/stat"), false)));
            eprintln!("xtask: soak window {i}/{count} done");
        }
        shared.stop.store(true, Ordering::Relaxed);
    });
    server.check_alive()?;
    let mut windows = shared.windows.into_inner().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    for (w, (rss, ticks)) in windows.iter_mut().zip(samples) {
        w.rss_kib = rss;
        w.cpu_ticks = ticks;
    }

    let _ = writeln!(
        report,
        "| window | logins/s | errors | late | start p50 / p99 ms | token p50 / p99 ms | delivery p99 ms | RSS MiB | server CPU |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|---|");
    let mut previous_ticks = ticks_idle;
    let mut all_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut p99s = Vec::new();
    let mut slow_windows = Vec::new();
    for (i, w) in windows.iter_mut().enumerate() {
        let secs = opts.window.min(total.saturating_sub(opts.window * i as u32)).as_secs_f64();
        let cpu = match (previous_ticks, w.cpu_ticks) {
            (Some(a), Some(b)) => format!("{:.0} %", (b.saturating_sub(a)) as f64 / secs),
            _ => "?".to_owned(),
        };
        previous_ticks = w.cpu_ticks;
        let errors: u64 = w.errors.values().sum();
        for (k, v) in &w.errors {
            *all_errors.entry(k.clone()).or_default() += v;
        }
        let (s50, s99) = (percentile(&mut w.start_us, 0.5), percentile(&mut w.start_us, 0.99));
        let (t50, t99) = (percentile(&mut w.token_us, 0.5), percentile(&mut w.token_us, 0.99));
        p99s.push((s99, t99));
        if (w.logins as f64 / secs) < HELD * rate {
            slow_windows.push(i + 1);
        }
        let _ = writeln!(
            report,
            "| {} | {:.0} | {errors} | {} | {} / {} | {} / {} | {} | {} | {cpu} |",
            i + 1,
            w.logins as f64 / secs,
            w.late,
            ms(s50),
            ms(s99),
            ms(t50),
            ms(t99),
            ms(percentile(&mut w.delivery_us, 0.99)),
            mib(w.rss_kib),
        );
    }
    let logins: u64 = windows.iter().map(|w| w.logins).sum();
    let errors: u64 = all_errors.values().sum();
    let late: u64 = windows.iter().map(|w| w.late).sum();
    let drift = |first: Option<u32>, last: Option<u32>| match (first, last) {
        (Some(a), Some(b)) if a > 0 => format!("{:.2}×", f64::from(b) / f64::from(a)),
        _ => "?".to_owned(),
    };
    let (first, last) = (p99s.first().copied().unwrap_or_default(), p99s.last().copied().unwrap_or_default());
    let rss_first = windows.first().and_then(|w| w.rss_kib);
    let rss_end = windows.last().and_then(|w| w.rss_kib);
    let _ = writeln!(report, "\nlogins: {logins} completed, {errors} failed, {late} begun >100 ms late");
    for (kind, n) in &all_errors {
        let _ = writeln!(report, "  {n} × {kind}");
    }
    let _ = writeln!(
        report,
        "p99 drift (last window / first): start {}, token {}",
        drift(first.0, last.0),
        drift(first.1, last.1)
    );
    let rss_drift = match (rss_first, rss_end) {
        (Some(a), Some(b)) if a > 0 => format!("{:.2}×", b as f64 / a as f64),
        _ => "?".to_owned(),
    };
    let _ = writeln!(
        report,
        "RSS: {} MiB idle, {} MiB after the first window, {} MiB at the end ({rss_drift} of the first window)",
        mib(rss_idle),
        mib(rss_first),
        mib(rss_end)
    );
    let mut problems = Vec::new();
    if errors > 0 {
        problems.push(format!("{errors} failed logins"));
    }
    if !slow_windows.is_empty() {
        problems.push(format!(
            "windows {slow_windows:?} completed under {:.0} % of the {rate:.0} logins/s asked",
            HELD * 100.0
        ));
    }
    Ok(Outcome { report, problems })
}

/// Identities: at least `MIN_POOL` and 100 s of logins at `rate`, a multiple of `workers`.
fn pool_size(workers: usize, rate: f64) -> usize {
    let wanted = MIN_POOL.max((rate * 100.0) as usize);
    wanted.div_ceil(workers) * workers
}
