//! `cargo xtask bench`: load on the two hot paths over loopback, against a release build.
//!
//! Phases, all in one run, each against a fresh `sesame serve` on a free 127.0.0.1 port
//! (temp config, `RUST_LOG=warn`):
//!
//! 1. `GET /health`: the ceiling of the HTTP stack (and of wrk) on this machine: the baseline.
//! 2. `POST /passwordless/start` at full load, one distinct email per request.
//! 3. The same path paced to half of the rate phase 2 measured (wrk `delay()`, calibrated by a
//!    short probe), for its p99 below saturation.
//! 4. `POST /oauth/token` (OTP grant), one exchange per code generated just before the phase
//!    (start + dev mailbox, from Rust).
//! 5. With `--store postgres` only: the floor, `pgbench` replaying the SQL of one start on the
//!    same Postgres at the same concurrency (`pg.rs`).
//!
//! `--store postgres` gives every phase a fresh database (`sesame migrate`d, dropped after).
//! `--ses-outage` runs another set of phases instead: start latency at a fixed rate with the SES
//! sender pointed at the local AWS emulator while it is up, slowed, frozen and stopped (`ses.rs`).
//!
//! Figures are reported as ratios against the baseline of the same run (docs/benchmarks.md).
//! A store or other setting goes in through `--config extra.toml`, added to the temp config.

mod mgmt;
mod ops;
mod pg;
mod ses;
mod soak;
mod sweep;

pub(crate) use soak::soak;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};

use crate::{root, run, target_dir};

const USAGE: &str = "usage: cargo xtask bench [--quick] [--codes N] [--config extra.toml]
                       [--store postgres [--pg-url URL] [--pool-size N] [--rounds N]]
                       [--baseline FILE]
                       [--ses-outage [--ses-rate N] [--ses-delay-ms N] [--ses-secs N] [--ses-rounds N]
                                     [--ses-long-secs N]]
  --quick              short phases (a smoke run of the bench itself; figures are not comparable)
  --codes N            codes generated for the token phase (default 60000, 30000 on Postgres;
                       15000 with --quick)
  --config FILE        TOML added to the bench's server config (e.g. a limiter); it must not set
                       `listen`, `log_format`, `dev_mailbox` or `[limits]`, which the bench owns
                       (nor `store`, `server_secret`, `[database]`, `[[clients]]` with --store
                       postgres, nor `email`, `[ses]` with --ses-outage)
  --store postgres     every phase on a fresh Postgres database (created, `sesame migrate`d and
                       dropped by the bench), then the floor: pgbench replaying the SQL of one
                       start at the same concurrency
  --pg-url URL         the Postgres server, as a superuser that may create databases
                       (default postgres://postgres@127.0.0.1:5432)
  --pool-size N        the service's [database] pool_size (default 32)
  --baseline FILE      a `sesame` binary built from an earlier commit: the start peak and the
                       token exchange also run against it, each right after the same phase of
                       this build, and the report gives this build's req/s ÷ the baseline's
  --rounds N           slices of (start peak, floor) one after the other, 5 s each, for the
                       target's ratio (default 10; 1 with --quick)
  --ops                instead of the usual phases: binary size, exec → ready, idle and peak RSS,
                       and peak start rate and paced start p99 with metrics on vs off
                       (--rounds rounds, default 3; 1 with --quick)
  --management         instead of the usual phases: GET /api/v2/users-by-email and client_credentials
                       tokens at full load (Sesame's CPU per request); with --store postgres, the
                       pgbench floor of their SQL on the same database
  --sweeper            with --store postgres, instead of the usual phases: start throughput while
                       the retention sweeper deletes a backlog of 1 million rows, against the same
                       backlog with the sweeper off (--rounds rounds of both, default 2)
  --ses-outage         instead of the usual phases: start latency at a fixed rate with email = \"ses\"
                       on the local AWS emulator (moto) while it is up, slowed, frozen and stopped
  --ses-rate N         the paced rate of --ses-outage, in starts per second (default 200)
  --ses-delay-ms N     what the slow proxy adds to every SES response (default 500)
  --ses-secs N         length of each --ses-outage phase (default 20; 4 with --quick)
  --ses-rounds N       times the five --ses-outage phases run, in order (default 3; 1 with
                       --quick); the summary takes each phase's median
  --ses-long-secs N    then one long outage (connections refused) on one server, reported in 6
                       windows (default 180; 12 with --quick; 0: none)";

/// The top-level settings the bench owns; `--config` may not repeat them.
const OWNED_KEYS: &[&str] = &["listen", "log_format", "dev_mailbox"];
/// Owned as well with `--store postgres`.
const PG_OWNED_KEYS: &[&str] = &["store", "server_secret", "database", "clients"];
/// Owned as well with `--ses-outage`.
const SES_OWNED_KEYS: &[&str] = &["email", "ses"];

/// All load comes from one address (127.0.0.1) and one client, so the per-IP and per-client
/// buckets are opened wide: every request still goes through the limiter (same work), none is
/// refused. The per-identifier buckets keep their defaults: each email is used once.
const LIMITS: &str = "
# The bench's load all comes from 127.0.0.1 and one client: those buckets are opened wide
# (the limiter still runs on every request).
[limits]
start_per_ip = { limit = 4000000000, window_secs = 1 }
start_per_client = { limit = 4000000000, window_secs = 1 }
exchange_per_ip = { limit = 4000000000, window_secs = 1 }
management_per_client = { limit = 4000000000, window_secs = 1 }
client_credentials_per_client = { limit = 4000000000, window_secs = 1 }
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Memory,
    Postgres,
}

#[derive(Debug)]
struct Options {
    quick: bool,
    codes: Option<usize>,
    extra_config: Option<PathBuf>,
    store: Store,
    pg_url: String,
    pool_size: u32,
    ses_outage: bool,
    ses_rate: f64,
    ses_delay_ms: u64,
    ses_secs: Option<u64>,
    ses_rounds: Option<u32>,
    ses_long_secs: Option<u64>,
    rounds: Option<u32>,
    ops: bool,
    sweeper: bool,
    management: bool,
    /// `--baseline`: an earlier build's binary, run through the start peak and the exchange too.
    baseline: Option<PathBuf>,
}

/// The value after option `name`, parsed as a number.
fn number<T: std::str::FromStr>(it: &mut std::slice::Iter<'_, String>, name: &str) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let n = it.next().with_context(|| format!("{name} needs a number"))?;
    n.parse().with_context(|| format!("{name} {n:?}"))
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut opts = Self {
            quick: false,
            codes: None,
            extra_config: None,
            store: Store::Memory,
            pg_url: "postgres://postgres@127.0.0.1:5432".into(),
            pool_size: 32,
            ses_outage: false,
            ses_rate: 200.0,
            ses_delay_ms: 500,
            ses_secs: None,
            ses_rounds: None,
            ses_long_secs: None,
            rounds: None,
            ops: false,
            sweeper: false,
            management: false,
            baseline: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "--codes" => opts.codes = Some(number(&mut it, "--codes")?),
                "--config" => opts.extra_config = Some(PathBuf::from(it.next().context("--config needs a file")?)),
                "--store" => {
                    opts.store = match it.next().map(String::as_str) {
                        Some("postgres") => Store::Postgres,
                        Some("memory") => Store::Memory,
                        other => bail!("--store takes `postgres` or `memory`, not {other:?}\n{USAGE}"),
                    }
                }
                "--pg-url" => opts.pg_url = it.next().context("--pg-url needs a URL")?.clone(),
                "--pool-size" => opts.pool_size = number(&mut it, "--pool-size")?,
                "--ses-outage" => opts.ses_outage = true,
                "--ses-rate" => opts.ses_rate = number(&mut it, "--ses-rate")?,
                "--ses-delay-ms" => opts.ses_delay_ms = number(&mut it, "--ses-delay-ms")?,
                "--ses-secs" => opts.ses_secs = Some(number(&mut it, "--ses-secs")?),
                "--ses-rounds" => opts.ses_rounds = Some(number(&mut it, "--ses-rounds")?),
                "--ses-long-secs" => opts.ses_long_secs = Some(number(&mut it, "--ses-long-secs")?),
                "--rounds" => opts.rounds = Some(number(&mut it, "--rounds")?),
                "--ops" => opts.ops = true,
                "--sweeper" => opts.sweeper = true,
                "--management" => opts.management = true,
                "--baseline" => {
                    let path = PathBuf::from(it.next().context("--baseline needs a sesame binary")?);
                    ensure!(path.is_file(), "--baseline {}: no such file", path.display());
                    opts.baseline = Some(path);
                }
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        ensure!(opts.pool_size >= 1, "--pool-size must be at least 1");
        ensure!(!opts.sweeper || opts.store == Store::Postgres, "--sweeper needs --store postgres");
        ensure!(opts.ses_rate >= 1.0, "--ses-rate must be at least 1 per second");
        Ok(opts)
    }

    /// The keys `--config` may not set with these options.
    fn owned_keys(&self) -> Vec<&'static str> {
        let mut keys = OWNED_KEYS.to_vec();
        if self.store == Store::Postgres {
            keys.extend_from_slice(PG_OWNED_KEYS);
        }
        if self.ses_outage {
            keys.extend_from_slice(SES_OWNED_KEYS);
        }
        if self.ops {
            keys.push("metrics");
        }
        if self.sweeper {
            keys.push("retention");
        }
        keys
    }

    /// The command line that reproduces this run, for the report.
    fn command(&self) -> String {
        let mut command = String::from("cargo xtask bench");
        if self.quick {
            command.push_str(" --quick");
        }
        if let Some(n) = self.codes {
            let _ = write!(command, " --codes {n}");
        }
        if let Some(path) = &self.extra_config {
            let _ = write!(command, " --config {}", path.display());
        }
        if self.store == Store::Postgres {
            command.push_str(" --store postgres");
            if self.pool_size != 32 {
                let _ = write!(command, " --pool-size {}", self.pool_size);
            }
            if let Some(n) = self.rounds {
                let _ = write!(command, " --rounds {n}");
            }
        }
        if self.ops {
            command.push_str(" --ops");
            if self.store != Store::Postgres
                && let Some(n) = self.rounds
            {
                let _ = write!(command, " --rounds {n}");
            }
        }
        if self.sweeper {
            command.push_str(" --sweeper");
        }
        if self.management {
            command.push_str(" --management");
        }
        if let Some(path) = &self.baseline {
            let _ = write!(command, " --baseline {}", path.display());
        }
        if self.ses_outage {
            let _ = write!(command, " --ses-outage --ses-rate {} --ses-delay-ms {}", self.ses_rate, self.ses_delay_ms);
            if let Some(secs) = self.ses_secs {
                let _ = write!(command, " --ses-secs {secs}");
            }
            if let Some(rounds) = self.ses_rounds {
                let _ = write!(command, " --ses-rounds {rounds}");
            }
            if let Some(secs) = self.ses_long_secs {
                let _ = write!(command, " --ses-long-secs {secs}");
            }
        }
        command
    }
}

/// Load shape and phase lengths.
#[derive(Debug, Clone, Copy)]
struct Plan {
    threads: u32,
    connections: u32,
    health: Duration,
    start: Duration,
    /// Phase 2 runs as this many back-to-back wrk runs on one server, to show drift.
    start_segments: u32,
    probe: Duration,
    half: Duration,
    token: Duration,
    codes: usize,
    /// Each pgbench run of the floor (`--store postgres`).
    floor: Duration,
    /// `--store postgres`: rounds of the start peak and its floor, one after the other.
    rounds: u32,
    /// Each half of a round.
    round: Duration,
    /// Each phase of `--ses-outage`.
    ses_phase: Duration,
    /// Times `--ses-outage` runs its five phases.
    ses_rounds: u32,
    /// The long refused-connection outage after the rounds (0: none), in 6 windows.
    ses_long: Duration,
}

impl Plan {
    fn new(opts: &Options) -> Self {
        let secs = Duration::from_secs;
        let mut plan = if opts.quick {
            Self {
                threads: 2,
                connections: 64,
                health: secs(3),
                start: secs(3),
                start_segments: 1,
                probe: secs(2),
                half: secs(3),
                token: secs(3),
                codes: 15_000,
                floor: secs(3),
                rounds: 1,
                round: secs(3),
                ses_phase: secs(4),
                ses_rounds: 1,
                ses_long: secs(12),
            }
        } else {
            Self {
                threads: 2,
                connections: 64,
                health: secs(10),
                start: secs(15),
                start_segments: 3,
                probe: secs(3),
                half: secs(10),
                token: secs(10),
                // Postgres makes codes (and exchanges them) at a few thousand per second: half
                // as many is still more than its token phase uses, and the codes stay fresh.
                codes: if opts.store == Store::Postgres { 30_000 } else { 60_000 },
                floor: secs(15),
                // The machine's speed moves by tens of percent from one few seconds to the next
                // here: the target's ratio is taken from slices that alternate the two, 5 s each
                // (each floor slice opens 64 new backends; longer slices make that cost smaller).
                rounds: 10,
                round: secs(5),
                // A p99 of a few milliseconds moves by tens of percent between two identical
                // phases here: three rounds of 20 s, and the median of each phase's three p99s.
                ses_phase: secs(20),
                ses_rounds: 3,
                // Codes live 180 s: an outage that long holds every message of its time.
                ses_long: secs(180),
            }
        };
        if let Some(secs) = opts.ses_secs {
            plan.ses_phase = Duration::from_secs(secs.max(1));
        }
        if let Some(rounds) = opts.ses_rounds {
            plan.ses_rounds = rounds.max(1);
        }
        if let Some(secs) = opts.ses_long_secs {
            plan.ses_long = Duration::from_secs(secs);
        }
        if let Some(n) = opts.codes {
            plan.codes = n;
        }
        if let Some(n) = opts.rounds {
            plan.rounds = n.max(1);
        }
        plan
    }

    fn shape(&self) -> String {
        format!("{}×{}", self.threads, self.connections / self.threads)
    }
}

pub(crate) fn bench(args: &[String]) -> anyhow::Result<()> {
    let opts = Options::parse(args)?;
    let plan = Plan::new(&opts);
    ensure!(plan.codes >= 1000, "--codes must be at least 1000");
    let extra = match &opts.extra_config {
        Some(path) => Some(read_extra_config(path, &opts.owned_keys())?),
        None => None,
    };
    let wrk_version = ensure_wrk()?;
    if opts.ses_outage {
        ses::install_moto()?;
    }
    let ctx = Ctx::prepare(&opts, plan, extra, LIMITS.to_owned())?;
    let work = ctx.work.clone();
    let began = Instant::now();
    let failed = || format!("bench failed; configs and logs are in {}", work.display());
    let text = if opts.management {
        let report = mgmt::mgmt_phases(&ctx).with_context(failed)?;
        report.render(&ctx, &opts, &wrk_version, began.elapsed())
    } else if opts.sweeper {
        let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 2 });
        let report = sweep::sweeper_phases(&ctx, rounds).with_context(failed)?;
        report.render(&ctx, &opts, &wrk_version, began.elapsed())
    } else if opts.ops {
        let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 3 });
        let report = ops::ops_phases(&ctx, rounds).with_context(failed)?;
        report.render(&ctx, &opts, &wrk_version, began.elapsed())
    } else if opts.ses_outage {
        let report = ses::outage_phases(&ctx, &opts).with_context(failed)?;
        report.render(&ctx, &opts, &wrk_version, began.elapsed())
    } else {
        let report = ctx.all_phases().with_context(failed)?;
        report.render(&ctx, &opts, &plan, &wrk_version, began.elapsed())
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    // The logs are only interesting when something failed; then the directory stays.
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Finds wrk, installs it with apt-get when it is missing and we are root, else says what to do.
fn ensure_wrk() -> anyhow::Result<String> {
    if let Some(v) = wrk_version() {
        return Ok(v);
    }
    let root_user = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let apt = Command::new("apt-get").arg("--version").output().is_ok_and(|o| o.status.success());
    if !(root_user && apt) {
        bail!(
            "the bench needs `wrk` on PATH and it is missing; install it (Debian/Ubuntu: `sudo apt-get install -y wrk`, \
             macOS: `brew install wrk`) and run again"
        );
    }
    eprintln!("xtask: wrk is missing; installing it with apt-get");
    let install = || Command::new("apt-get").args(["install", "-y", "--no-install-recommends", "wrk"]).status();
    if !install().is_ok_and(|s| s.success()) {
        run(Command::new("apt-get").arg("update"))?;
        let status = install().context("running apt-get install wrk")?;
        ensure!(status.success(), "`apt-get install -y wrk` failed ({status}); install wrk by hand and run again");
    }
    wrk_version().context("wrk was installed but `wrk --version` does not run")
}

fn wrk_version() -> Option<String> {
    // `wrk --version` prints its banner and exits with 1.
    let out = Command::new("wrk").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    line.starts_with("wrk").then(|| line.split(" Copyright").next().unwrap_or(line).to_owned())
}

/// Reads `--config`, refusing the top-level keys and tables the bench sets itself (`owned`, and
/// `limits`).
fn read_extra_config(path: &Path, owned: &[&str]) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading --config {}", path.display()))?;
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        // `[table]`, `[[array]]`, `[table.sub]`, or a (possibly dotted) key at the top level.
        let name = if line.starts_with('[') {
            in_table = true;
            line.trim_start_matches('[').split(['.', ']']).next()
        } else if !in_table && line.contains('=') && !line.starts_with('#') {
            line.split('=').next().and_then(|k| k.split('.').next())
        } else {
            None
        };
        let name = name.unwrap_or("").trim().trim_matches('"');
        if owned.iter().chain(&["limits"]).any(|k| *k == name) {
            bail!("--config {} sets `{name}`, which the bench sets itself; remove it", path.display());
        }
    }
    Ok(text)
}

#[derive(Debug)]
struct Ctx {
    binary: PathBuf,
    /// `--baseline`.
    baseline: Option<PathBuf>,
    work: PathBuf,
    extra: Option<String>,
    lua: PathBuf,
    run_id: u64,
    plan: Plan,
    /// `--store postgres`: every server gets a fresh database.
    pg: Option<pg::Postgres>,
    /// The `[limits]` table, last in every config.
    limits: String,
}

/// One line of the table.
#[derive(Debug)]
struct Row {
    phase: String,
    path: String,
    load: String,
    kind: RowKind,
    result: WrkResult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    /// As much load as the connections give.
    Peak,
    /// Held to a set rate: its req/s is the target's, not a capacity.
    Paced,
    /// A peak of the `--baseline` binary, for the ratio of this build to it.
    Baseline,
    /// The sum of the segments above it: requests and req/s only (percentiles do not add up).
    Total,
    /// pgbench on the same Postgres (`--store postgres`): transactions, not HTTP requests.
    Floor,
}

#[derive(Debug)]
struct Report {
    rows: Vec<Row>,
    half_target: f64,
    codes_made: usize,
    codes_secs: f64,
    /// Share of CPU time other processes used in the second before the load.
    busy_before: Option<f64>,
    /// `--store postgres`: the floor and what the database held (`pg.rs`).
    pg: Option<pg::PgReport>,
}

impl Ctx {
    /// The database server (`--store postgres`), the release build and a work directory.
    fn prepare(opts: &Options, plan: Plan, extra: Option<String>, limits: String) -> anyhow::Result<Self> {
        let run_id = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let pg = match opts.store {
            Store::Postgres => Some(pg::Postgres::find(&opts.pg_url, opts.pool_size, run_id)?),
            Store::Memory => None,
        };
        run(crate::cargo().args(["build", "--release", "--package", "sesame-api", "--bin", "sesame"]))?;
        let binary = target_dir().join("release").join("sesame");
        ensure!(binary.is_file(), "no release binary at {}", binary.display());
        let work = std::env::temp_dir().join(format!("sesame-bench-{}", std::process::id()));
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let baseline = opts.baseline.clone();
        Ok(Self { binary, baseline, work, extra, lua: root().join("xtask").join("bench"), run_id, plan, pg, limits })
    }

    fn all_phases(&self) -> anyhow::Result<Report> {
        let plan = &self.plan;
        let shape = plan.shape();
        let mut rows = Vec::new();
        let busy_before = cpu_busy(Duration::from_secs(1));
        if let Some(busy) = busy_before.filter(|b| *b > 0.2) {
            eprintln!(
                "xtask: warning: other processes keep {:.0} % of the CPUs busy; the figures will be noisy",
                busy * 100.0
            );
        }

        let phases = if self.pg.is_some() { 5 } else { 4 };
        eprintln!("xtask: phase 1/{phases}: baseline GET /health for {}s", plan.health.as_secs());
        let server = self.server("health")?;
        let health = self.wrk("health.lua", &server, plan.connections, plan.health, &[])?;
        drop(server);
        rows.push(Row {
            phase: "baseline".into(),
            path: "GET /health".into(),
            load: shape.clone(),
            kind: RowKind::Peak,
            result: health,
        });

        let segments = plan.start_segments.max(1);
        let segment = plan.start / segments;
        eprintln!(
            "xtask: phase 2/{phases}: POST /passwordless/start at full load for {}s ({segments} × {}s on one server)",
            plan.start.as_secs(),
            segment.as_secs()
        );
        let server = self.server("start")?;
        check_start(&server, &format!("bench-{}-check@example.com", self.run_id))?;
        let mut total = WrkResult::default();
        for i in 0..segments {
            let prefix = format!("peak{i}");
            let seg = self.wrk("start.lua", &server, plan.connections, segment, &[("BENCH_PREFIX", prefix)])?;
            total.add(&seg);
            let (from, to) = (segment.as_secs() * u64::from(i), segment.as_secs() * u64::from(i + 1));
            rows.push(Row {
                phase: format!("start, peak, {from}–{to} s"),
                path: "POST /passwordless/start".into(),
                load: shape.clone(),
                kind: RowKind::Peak,
                result: seg,
            });
        }
        // What the peak left in the database: the size of a sealed message (for the floor's
        // outbox rows) and the rows one start makes.
        let db_state = match (&self.pg, &server.db) {
            (Some(pg), Some(db)) => Some(pg.peak_state(db)?),
            _ => None,
        };
        drop(server);
        let peak = total.rps();
        if let Some(baseline) = &self.baseline {
            eprintln!("xtask: phase 2/{phases}, baseline: the same start peak against {}", baseline.display());
            let server = self.server_of(baseline, "start-baseline")?;
            check_start(&server, &format!("bench-{}-basecheck@example.com", self.run_id))?;
            let prefix = "basepeak".to_owned();
            let result = self.wrk("start.lua", &server, plan.connections, plan.start, &[("BENCH_PREFIX", prefix)])?;
            rows.push(Row {
                phase: "start, peak, baseline binary".into(),
                path: "POST /passwordless/start".into(),
                load: shape.clone(),
                kind: RowKind::Baseline,
                result,
            });
        }
        if segments > 1 {
            rows.push(Row {
                phase: format!("start, peak, all {} s", plan.start.as_secs()),
                path: "POST /passwordless/start".into(),
                load: shape.clone(),
                kind: RowKind::Total,
                result: total,
            });
        }

        let target = peak / 2.0;
        eprintln!("xtask: phase 3/{phases}: POST /passwordless/start paced to {target:.0} req/s (half the peak)");
        let server = self.server("start-half")?;
        let half = self.paced_start(&server, target, plan.half, "half")?;
        drop(server);
        rows.push(Row {
            phase: "start, ½ peak rate".into(),
            path: "POST /passwordless/start".into(),
            load: format!("{shape}, paced to {target:.0}/s"),
            kind: RowKind::Paced,
            result: half,
        });

        eprintln!("xtask: phase 4/{phases}: POST /oauth/token; generating {} codes first", plan.codes);
        let server = self.server("token")?;
        check_token(&server, &format!("bench-{}-check@example.com", self.run_id))?;
        let codes_file = self.work.join("codes.txt");
        let began = Instant::now();
        let codes_made = generate_codes(&server, plan.codes, &format!("bench-{}-code", self.run_id), &codes_file)?;
        let codes_secs = began.elapsed().as_secs_f64();
        eprintln!("xtask: {codes_made} codes in {codes_secs:.1}s; exchanging them for {}s", plan.token.as_secs());
        let token = self.wrk(
            "token.lua",
            &server,
            plan.connections,
            plan.token,
            &[("BENCH_CODES", codes_file.display().to_string())],
        )?;
        drop(server);
        rows.push(Row {
            phase: "token exchange".into(),
            path: "POST /oauth/token".into(),
            load: shape.clone(),
            kind: RowKind::Peak,
            result: token,
        });
        if let Some(baseline) = &self.baseline {
            eprintln!("xtask: phase 4/{phases}, baseline: the same exchange against {}", baseline.display());
            let server = self.server_of(baseline, "token-baseline")?;
            check_token(&server, &format!("bench-{}-basecheck@example.com", self.run_id))?;
            let file = self.work.join("codes-baseline.txt");
            generate_codes(&server, codes_made, &format!("bench-{}-basecode", self.run_id), &file)?;
            let result = self.wrk(
                "token.lua",
                &server,
                plan.connections,
                plan.token,
                &[("BENCH_CODES", file.display().to_string())],
            )?;
            drop(server);
            rows.push(Row {
                phase: "token exchange, baseline binary".into(),
                path: "POST /oauth/token".into(),
                load: shape,
                kind: RowKind::Baseline,
                result,
            });
        }

        let pg = match (&self.pg, db_state) {
            (Some(pg), Some(state)) => {
                eprintln!("xtask: phase 5/5: the floor: pgbench replaying the SQL of one start");
                let mut report = self.floor(pg, state, &mut rows)?;
                report.rounds = self.alternate(pg, state)?;
                Some(report)
            }
            _ => None,
        };
        Ok(Report { rows, half_target: target, codes_made, codes_secs, busy_before, pg })
    }

    /// A probe at the naive delay (connections / rate) measures what each request adds on top
    /// of the delay; the measured run subtracts it.
    fn paced_start(&self, server: &Server, target: f64, length: Duration, prefix: &str) -> anyhow::Result<WrkResult> {
        self.paced_start_probed(server, target, length, prefix).map(|(_, run)| run)
    }

    /// As `paced_start`, with the probe's result first.
    fn paced_start_probed(
        &self,
        server: &Server,
        target: f64,
        length: Duration,
        prefix: &str,
    ) -> anyhow::Result<(WrkResult, WrkResult)> {
        let (probe, delay_ms) = self.pace(server, target, prefix)?;
        let run = self.paced_run(server, delay_ms, length, prefix)?;
        Ok((probe, run))
    }

    /// The probe of a paced phase: its result and the delay that holds `target`.
    fn pace(&self, server: &Server, target: f64, prefix: &str) -> anyhow::Result<(WrkResult, f64)> {
        let conns = f64::from(self.plan.connections);
        let naive_ms = conns / target * 1000.0;
        let probe = self.wrk(
            "start.lua",
            server,
            self.plan.connections,
            self.plan.probe,
            &[("BENCH_PREFIX", format!("{prefix}probe")), ("BENCH_DELAY_MS", format!("{naive_ms:.3}"))],
        )?;
        let cycle_ms = conns / probe.rps().max(1.0) * 1000.0;
        let overhead_ms = (cycle_ms - naive_ms).max(0.0);
        let delay_ms = (naive_ms - overhead_ms).max(0.0);
        eprintln!(
            "xtask: probe at delay {naive_ms:.2} ms gave {:.0} req/s; measuring at delay {delay_ms:.2} ms",
            probe.rps()
        );
        Ok((probe, delay_ms))
    }

    /// Starts paced by `delay_ms` per connection (from `pace`).
    fn paced_run(&self, server: &Server, delay_ms: f64, length: Duration, prefix: &str) -> anyhow::Result<WrkResult> {
        self.wrk(
            "start.lua",
            server,
            self.plan.connections,
            length,
            &[("BENCH_PREFIX", prefix.into()), ("BENCH_DELAY_MS", format!("{delay_ms:.3}"))],
        )
    }

    fn server(&self, name: &str) -> anyhow::Result<Server> {
        self.server_with(name, None)
    }

    /// A fresh `sesame serve` (and, with `--store postgres`, a fresh database, migrated first).
    /// `ses` points `email = "ses"` at an endpoint (`--ses-outage`).
    fn server_with(&self, name: &str, ses: Option<&ses::SesTarget>) -> anyhow::Result<Server> {
        self.server_full(name, ses, "", "")
    }

    /// A fresh server with `top` (top-level TOML keys) added to its config.
    fn server_top(&self, name: &str, top: &str) -> anyhow::Result<Server> {
        self.server_full(name, None, top, "")
    }

    /// A fresh server with `tables` (TOML tables) added at the end of its config.
    fn server_tables(&self, name: &str, tables: &str) -> anyhow::Result<Server> {
        self.server_full(name, None, "", tables)
    }

    fn server_full(&self, name: &str, ses: Option<&ses::SesTarget>, top: &str, tables: &str) -> anyhow::Result<Server> {
        self.server_run(&self.binary, name, ses, top, tables)
    }

    /// A fresh server of another build (`--baseline`), set up as `server` sets up this one.
    fn server_of(&self, binary: &Path, name: &str) -> anyhow::Result<Server> {
        self.server_run(binary, name, None, "", "")
    }

    fn server_run(
        &self,
        binary: &Path,
        name: &str,
        ses: Option<&ses::SesTarget>,
        top: &str,
        tables: &str,
    ) -> anyhow::Result<Server> {
        let port = free_port()?;
        let db = match &self.pg {
            Some(pg) => Some(pg.create_db(name)?),
            None => None,
        };
        let config = self.work.join(format!("{name}.toml"));
        let mut text = format!(
            "# Written by `cargo xtask bench`.\nlisten = \"127.0.0.1:{port}\"\nlog_format = \"compact\"\ndev_mailbox = true\n"
        );
        // Top-level keys first: after --config, they could land in one of its tables.
        if let Some(pg) = &self.pg {
            text.push_str(&pg.top_level_settings());
        }
        if ses.is_some() {
            text.push_str("email = \"ses\"\n");
        }
        text.push_str(top);
        if let Some(extra) = &self.extra {
            text.push_str("\n# From --config.\n");
            text.push_str(extra);
        }
        if let (Some(pg), Some(db)) = (&self.pg, &db) {
            text.push_str(&pg.tables(db));
        }
        if let Some(ses) = ses {
            text.push_str(&ses.table());
        }
        text.push_str(tables);
        // Last: a table header here cannot capture the keys of --config.
        text.push_str(&self.limits);
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let log = self.work.join(format!("{name}.log"));
        if db.is_some() {
            let out = Command::new(binary)
                .arg("--config")
                .arg(&config)
                .arg("migrate")
                .env("RUST_LOG", "warn")
                .env_remove("SESAME_CONFIG")
                .output()
                .with_context(|| format!("running {} migrate", binary.display()))?;
            ensure!(
                out.status.success(),
                "sesame migrate failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(binary);
        cmd.arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "warn")
            .env_remove("SESAME_CONFIG")
            // As deployed: a developer's RUST_BACKTRACE=1 makes every anyhow error (a failed
            // delivery, say) capture a backtrace.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        if ses.is_some() {
            // The emulator's static credentials, through the standard AWS chain.
            cmd.envs([
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_REGION", ses::REGION),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ])
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        }
        let spawned = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            db,
            helpers: Vec::new(),
            ready_after: Duration::ZERO,
        };
        server.wait_ready()?;
        server.ready_after = spawned.elapsed();
        Ok(server)
    }

    fn wrk(
        &self,
        script: &str,
        server: &Server,
        connections: u32,
        duration: Duration,
        env: &[(&str, String)],
    ) -> anyhow::Result<WrkResult> {
        let mut cmd = Command::new("wrk");
        cmd.arg(format!("-t{}", self.plan.threads))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{}s", duration.as_secs()))
            .args(["--timeout", "5s", "--latency", "-s"])
            .arg(self.lua.join(script))
            .arg(format!("http://{}/", server.addr))
            .env("BENCH_LUA_DIR", &self.lua)
            .env("BENCH_THREADS", self.plan.threads.to_string())
            .env("BENCH_RUN", self.run_id.to_string())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let pids = server.pids();
        let (rss_before_kb, _) = rss_kb(server.child.id());
        let watch = self.pg.as_ref().map(pg::Postgres::watch_cpu);
        let before = CpuSnapshot::take(&pids);
        let out = cmd.output().context("running wrk")?;
        let after = CpuSnapshot::take(&pids);
        let pg_ticks = watch.map_or(0, pg::CpuWatch::finish);
        if self.pg.is_some() {
            eprintln!(
                "xtask: Postgres (the bench's backends, the writers) and block I/O used {} during the run",
                cpu_secs(pg_ticks)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines().filter(|l| !l.starts_with("BENCH ")) {
            eprintln!("  | {line}");
        }
        if !out.status.success() {
            bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        let line = stdout.lines().find(|l| l.starts_with("BENCH ")).context("wrk printed no BENCH result line")?;
        server.check_alive()?;
        let mut result = WrkResult::parse(line)?;
        result.other_cpu = before.zip(after).and_then(|(b, a)| a.others_since(&b, pg_ticks));
        if let Some((b, a)) = before.zip(after) {
            (result.server_cpu_s, result.helper_cpu_s) = a.server_and_helpers_since(&b);
        }
        result.db_cpu_s = pg_ticks as f64 / 100.0;
        result.rss_before_kb = rss_before_kb;
        result.rss_peak_kb = rss_kb(server.child.id()).1;
        Ok(result)
    }
}

/// The share of CPU time spent busy over `window`, from /proc/stat (Linux); the bench is idle
/// meanwhile, so it is what other processes use.
fn cpu_busy(window: Duration) -> Option<f64> {
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some((fields.iter().sum(), idle))
    }
    let (total0, idle0) = sample()?;
    std::thread::sleep(window);
    let (total1, idle1) = sample()?;
    let total = total1.checked_sub(total0)?.max(1);
    Some(1.0 - idle1.saturating_sub(idle0) as f64 / total as f64)
}

/// CPU time counters (clock ticks) from /proc (Linux), to tell how much of the machine other
/// processes took during a run.
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    /// All CPUs: every state, and the idle ones.
    total: u64,
    idle: u64,
    /// The server (all its threads).
    server: u64,
    /// The helpers the phase runs (the emulator, a proxy).
    helpers: u64,
    /// This process and its reaped children (wrk, once `output()` has waited for it).
    ours: u64,
}

impl CpuSnapshot {
    /// `pids[0]` is the server, which must be there; helpers that are gone count nothing.
    fn take(pids: &[u32]) -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let total = cpu.iter().take(8).sum();
        let idle = cpu.get(3)? + cpu.get(4).copied().unwrap_or(0);
        let server = match pids.first() {
            Some(pid) => proc_ticks(&format!("/proc/{pid}/stat"), false)?,
            None => 0,
        };
        let helpers = pids.iter().skip(1).filter_map(|pid| proc_ticks(&format!("/proc/{pid}/stat"), false)).sum();
        let ours = proc_ticks("/proc/self/stat", true)?;
        Some(Self { total, idle, server, helpers, ours })
    }

    /// `extra`: ticks of processes that worked for the bench meanwhile and are in neither
    /// snapshot (the Postgres backends of its databases).
    fn others_since(&self, before: &Self, extra: u64) -> Option<f64> {
        let total = self.total.checked_sub(before.total)?;
        let busy = total.checked_sub(self.idle.checked_sub(before.idle)?)?;
        let ours = self.server.saturating_sub(before.server)
            + self.helpers.saturating_sub(before.helpers)
            + self.ours.saturating_sub(before.ours)
            + extra;
        (total > 0).then(|| busy.saturating_sub(ours) as f64 / total as f64)
    }

    /// CPU seconds the server and the helpers used since `before`.
    fn server_and_helpers_since(&self, before: &Self) -> (f64, f64) {
        let secs = |t: u64| t as f64 / 100.0;
        (secs(self.server.saturating_sub(before.server)), secs(self.helpers.saturating_sub(before.helpers)))
    }
}

/// `VmRSS` and `VmHWM` of a process, in kB (Linux); zeros when it cannot be read.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of a process (+ cutime + cstime: its waited-for children).
fn proc_ticks(path: &str, children: bool) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The fields after the command name (which may hold spaces) start at field 3 (state).
    let fields: Vec<u64> =
        text.rsplit_once(')')?.1.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    // utime is field 14 → index 10 here; stime 15, cutime 16, cstime 17.
    let own = fields.get(10)? + fields.get(11)?;
    Some(if children { own + fields.get(12)? + fields.get(13)? } else { own })
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A `sesame serve` child; killed when dropped (and then its database, if it has one).
#[derive(Debug)]
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// `--store postgres`: dropped after the child, by field order.
    db: Option<pg::Db>,
    /// Processes that work for this server during a phase (the emulator, a proxy): their CPU
    /// time is the bench's, not "other CPU".
    helpers: Vec<u32>,
    /// From exec to the first `GET /health` answered.
    ready_after: Duration,
}

impl Server {
    /// The server first, then its helpers.
    fn pids(&self) -> Vec<u32> {
        std::iter::once(self.child.id()).chain(self.helpers.iter().copied()).collect()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("sesame exited at start ({status}); log:\n{}", self.log_tail());
            }
            if Http::new(self.addr).call("GET", "/health", None).is_ok_and(|(status, _)| status == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("sesame did not answer /health on {} within 30s; log:\n{}", self.addr, self.log_tail());
            }
            // Short: the bench reports the time from exec to ready (`--ops`).
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn check_alive(&self) -> anyhow::Result<()> {
        if Http::new(self.addr).call("GET", "/health", None).is_ok_and(|(status, _)| status == 200) {
            Ok(())
        } else {
            bail!("sesame stopped answering during the phase; log:\n{}", self.log_tail())
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("({})\n{}", self.log.display(), lines[lines.len().saturating_sub(30)..].join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the scripts' `done()` prints (xtask/bench/common.lua).
#[derive(Debug, Clone, Copy, Default)]
struct WrkResult {
    requests: u64,
    duration_us: u64,
    /// HTTP statuses ≥ 400 (wrk's "Non-2xx or 3xx responses"); none of these paths redirects.
    non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    socket_errors: u64,
    p50_us: u64,
    p99_us: u64,
    /// Token phase: exchanges sent after a thread ran out of codes.
    exhausted: u64,
    /// Share of all CPU time that processes other than the server, wrk and the xtask used
    /// during the run: above a few percent, the figures are noisy.
    other_cpu: Option<f64>,
    /// CPU seconds the server used during the run.
    server_cpu_s: f64,
    /// CPU seconds its helpers (the emulator, a proxy) used.
    helper_cpu_s: f64,
    /// `--store postgres`: CPU seconds of the bench's Postgres backends, Postgres's writers and
    /// the kernel's block-I/O workers during the run.
    db_cpu_s: f64,
    /// The server's resident memory just before the run (`VmRSS`, kB).
    rss_before_kb: u64,
    /// The server's resident high-water mark after the run (`VmHWM`, kB).
    rss_peak_kb: u64,
}

impl WrkResult {
    fn parse(line: &str) -> anyhow::Result<Self> {
        let fields: HashMap<&str, u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| Ok((k, v.parse::<f64>().with_context(|| format!("{k}={v} in {line:?}"))? as u64)))
            .collect::<anyhow::Result<_>>()?;
        let get = |k: &str| fields.get(k).copied().with_context(|| format!("no {k} in {line:?}"));
        Ok(Self {
            requests: get("requests")?,
            duration_us: get("duration_us")?,
            non_2xx: get("status_errors")?,
            socket_errors: get("connect")? + get("read")? + get("write")? + get("timeout")?,
            p50_us: get("p50_us")?,
            p99_us: get("p99_us")?,
            exhausted: get("exhausted")?,
            other_cpu: None,
            server_cpu_s: 0.0,
            helper_cpu_s: 0.0,
            db_cpu_s: 0.0,
            rss_before_kb: 0,
            rss_peak_kb: 0,
        })
    }

    /// Adds a later run on the same server (counts and time only).
    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.duration_us += other.duration_us;
        self.non_2xx += other.non_2xx;
        self.socket_errors += other.socket_errors;
        self.exhausted += other.exhausted;
        self.server_cpu_s += other.server_cpu_s;
        self.helper_cpu_s += other.helper_cpu_s;
        self.db_cpu_s += other.db_cpu_s;
        self.rss_before_kb = if self.rss_before_kb == 0 { other.rss_before_kb } else { self.rss_before_kb };
        self.rss_peak_kb = self.rss_peak_kb.max(other.rss_peak_kb);
        self.other_cpu = match (self.other_cpu, other.other_cpu) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }
}

/// A one-off start; fails clearly when the config breaks the path before any load.
fn check_start(server: &Server, email: &str) -> anyhow::Result<()> {
    let (status, body) = Http::new(server.addr).call("POST", "/passwordless/start", Some(&start_body(email)))?;
    ensure!(status == 200, "POST /passwordless/start answered {status}: {body}");
    Ok(())
}

/// One start → mailbox → token round, before spending codes under load.
fn check_token(server: &Server, email: &str) -> anyhow::Result<()> {
    let mut http = Http::new(server.addr);
    let codes = {
        let mut codes = HashMap::new();
        let (status, body) = http.call("POST", "/passwordless/start", Some(&start_body(email)))?;
        ensure!(status == 200, "POST /passwordless/start answered {status}: {body}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while codes.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            read_mailbox(&mut http, &mut codes, &HashSet::from([email.to_owned()]))?;
        }
        codes
    };
    let code = codes.get(email).with_context(|| format!("no code reached /dev/mailbox for {email} in 5s"))?;
    let (status, body) = http.call("POST", "/oauth/token", Some(&token_body(email, code)))?;
    ensure!(status == 200 && body.contains("access_token"), "POST /oauth/token answered {status}: {body}");
    Ok(())
}

fn start_body(email: &str) -> String {
    format!(r#"{{"client_id":"sesame-dev","connection":"email","email":"{email}","send":"code"}}"#)
}

fn token_body(email: &str, code: &str) -> String {
    format!(
        r#"{{"grant_type":"http://auth0.com/oauth/grant-type/passwordless/otp","client_id":"sesame-dev","realm":"email","username":"{email}","otp":"{code}","scope":"openid profile email"}}"#
    )
}

/// Starts `n` distinct emails and collects their codes from `/dev/mailbox`, in batches that fit
/// the mailbox (it keeps the newest 10 000 messages), then writes "email code" lines to `out`.
fn generate_codes(server: &Server, n: usize, prefix: &str, out: &Path) -> anyhow::Result<usize> {
    const BATCH: usize = 4000;
    const WORKERS: usize = 4;
    let mut lines = String::with_capacity(n * 48);
    let mut reader = Http::new(server.addr);
    let mut made = 0;
    while made < n {
        let emails: Vec<String> = (made..n.min(made + BATCH)).map(|i| format!("{prefix}-{i}@example.com")).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = emails
                .chunks(emails.len().div_ceil(WORKERS))
                .map(|chunk| {
                    scope.spawn(move || -> anyhow::Result<()> {
                        let mut http = Http::new(server.addr);
                        for email in chunk {
                            let (status, body) = http.call("POST", "/passwordless/start", Some(&start_body(email)))?;
                            ensure!(status == 200, "generating codes: start for {email} answered {status}: {body}");
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("a code worker panicked"))?)
        })?;
        // Delivery is asynchronous (the outbox worker): read until every code of the batch is in.
        let wanted: HashSet<String> = emails.iter().cloned().collect();
        let mut codes = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            read_mailbox(&mut reader, &mut codes, &wanted)?;
            if codes.len() == wanted.len() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "generating codes: only {} of {} codes reached /dev/mailbox in 20s",
                codes.len(),
                wanted.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for email in &emails {
            if let Some(code) = codes.get(email) {
                let _ = writeln!(lines, "{email} {code}");
            }
        }
        made += emails.len();
    }
    std::fs::write(out, lines).with_context(|| format!("writing {}", out.display()))?;
    Ok(made)
}

/// Adds the newest code of each wanted recipient found in the whole mailbox to `codes`.
fn read_mailbox(http: &mut Http, codes: &mut HashMap<String, String>, wanted: &HashSet<String>) -> anyhow::Result<()> {
    let (status, body) = http.call("GET", "/dev/mailbox", None)?;
    ensure!(status == 200, "GET /dev/mailbox answered {status}: {body}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&body).context("parsing /dev/mailbox")?;
    // Newest first: the first entry for a recipient holds its live code.
    for entry in entries {
        let (Some(to), Some(code)) = (entry["to"].as_str(), entry["code"].as_str()) else { continue };
        if wanted.contains(to) && !codes.contains_key(to) {
            codes.insert(to.to_owned(), code.to_owned());
        }
    }
    Ok(())
}

/// A minimal HTTP/1.1 keep-alive client over std (JSON bodies, Content-Length or chunked).
#[derive(Debug)]
pub(crate) struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    /// One request with a JSON body (or none); on a connection the server closed meanwhile,
    /// retries once on a new one.
    pub(crate) fn call(&mut self, method: &str, path: &str, json: Option<&str>) -> anyhow::Result<(u16, String)> {
        self.call_with(method, path, json.map(|b| ("application/json", b)), &[])
    }

    /// One request with any body (`(content type, body)`) and extra headers.
    pub(crate) fn call_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String)> {
        let reused = self.conn.is_some();
        match self.try_call(method, path, body, headers) {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                self.conn = None;
                self.try_call(method, path, body, headers)
            }
            Err(e) => Err(e),
        }
        .with_context(|| format!("{method} http://{}{path}", self.addr))
    }

    fn try_call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String)> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                stream.set_nodelay(true)?;
                self.conn.insert(BufReader::new(stream))
            }
        };
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            let _ = write!(req, "{name}: {value}\r\n");
        }
        if let Some((content_type, body)) = body {
            let _ = write!(req, "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        } else {
            req.push_str("\r\n");
        }
        conn.get_mut().write_all(req.as_bytes())?;

        let mut line = String::new();
        ensure!(conn.read_line(&mut line)? > 0, "connection closed");
        let status: u16 = line.split_whitespace().nth(1).context("bad status line")?.parse()?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            ensure!(conn.read_line(&mut line)? > 0, "connection closed in headers");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').context("bad header")?;
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase());
            match name.as_str() {
                "content-length" => length = Some(value.parse::<usize>()?),
                "transfer-encoding" => chunked = value.contains("chunked"),
                "connection" => close = value == "close",
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
                let mut chunk = vec![0; size + 2];
                conn.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            conn.read_exact(&mut body)?;
        } else {
            conn.read_to_end(&mut body)?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// The lines above every table: the command, the machine, the build, the settings.
fn report_header(ctx: &Ctx, opts: &Options, wrk: &str, busy_before: Option<f64>, elapsed: Duration) -> String {
    let mut s = String::new();
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(0);
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no", "--", "crates", "Cargo.toml", "Cargo.lock"])
        .current_dir(root())
        .output()
        .is_ok_and(|o| !o.stdout.trim_ascii().is_empty());
    let rev = match (rev.is_empty(), dirty) {
        (true, _) => "an unknown revision (not a git checkout)".to_owned(),
        (false, true) => format!("{rev} + uncommitted changes"),
        (false, false) => rev,
    };
    let mut settings = match &ctx.pg {
        Some(pg) => pg.describe(),
        None => "embedded default (memory store, memory limiter)".to_owned(),
    };
    if opts.ses_outage {
        settings.push_str(", email = \"ses\" on the local AWS emulator");
    }
    if let Some(p) = &opts.extra_config {
        let _ = write!(settings, " + --config {}", p.display());
    }
    let _ = writeln!(s, "## `{}`\n", opts.command());
    let _ = writeln!(
        s,
        "Machine: {cpus} cores ({cpu_model}); load generator and server share them; \
         CPU busy with other processes just before the load: {}. {wrk}; release build of {rev}; \
         loopback 127.0.0.1; settings: {settings}; {:.0} s in all.\n",
        percent(busy_before),
        elapsed.as_secs_f64()
    );
    s
}

/// The rows as a Markdown table; `× /health` divides by `base` req/s.
fn render_rows(rows: &[Row], base: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| phase | path | load (threads×conns) | s | requests | req/s | × /health | p50 | p99 | non-2xx | socket errors | sesame CPU/req | Postgres CPU/req | RSS before → high-water | other CPU |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let r = &row.result;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.phase,
            if row.kind == RowKind::Floor { row.path.clone() } else { format!("`{}`", row.path) },
            row.load,
            r.duration_us as f64 / 1e6,
            r.requests,
            r.rps(),
            if row.kind == RowKind::Paced { "(paced)".to_owned() } else { format!("{:.3}", r.rps() / base) },
            if row.kind == RowKind::Total { "—".to_owned() } else { ms(r.p50_us) },
            if row.kind == RowKind::Total { "—".to_owned() } else { ms(r.p99_us) },
            r.non_2xx,
            r.socket_errors,
            per_request_ms(r.server_cpu_s, r.requests),
            per_request_ms(r.db_cpu_s, r.requests),
            if r.rss_peak_kb == 0 {
                "—".to_owned()
            } else {
                format!("{:.1} → {:.1} MB", r.rss_before_kb as f64 / 1024.0, r.rss_peak_kb as f64 / 1024.0)
            },
            percent(r.other_cpu),
        );
    }
    s
}

/// CPU seconds spread over the requests of a row, in ms; a dash where nothing was measured.
fn per_request_ms(cpu_s: f64, requests: u64) -> String {
    if cpu_s <= 0.0 || requests == 0 { "—".to_owned() } else { format!("{:.3} ms", cpu_s * 1000.0 / requests as f64) }
}

/// The noisy-run and clean-run lines under a table.
fn render_verdicts(rows: &[Row]) -> String {
    let mut s = String::new();
    let noisy = rows.iter().filter_map(|r| r.result.other_cpu).fold(0.0_f64, f64::max);
    if noisy > NOISY {
        let _ = writeln!(
            s,
            "**Noisy run**: other processes took up to {:.0} % of the CPUs during a phase (\"other CPU\"); \
             compare runs whose phases all stay under {:.0} %.",
            noisy * 100.0,
            NOISY * 100.0
        );
    }
    let bad: u64 =
        rows.iter().filter(|r| r.kind != RowKind::Total).map(|r| r.result.non_2xx + r.result.socket_errors).sum();
    let _ = writeln!(
        s,
        "{}",
        if bad == 0 {
            "Clean: no non-2xx response (no failed transaction), no socket error."
        } else {
            "**Not a clean run**: see non-2xx / socket errors."
        }
    );
    s
}

/// With `--baseline`: this build's start peak and exchange ÷ the baseline's, in the same run,
/// against issue 13's targets (Postgres: start ≥ 1.5×, exchange ≥ 2×; memory: a start peak not
/// lower than before).
fn render_baseline(rows: &[Row], opts: &Options) -> String {
    let mut s = String::new();
    let Some(path) = &opts.baseline else { return s };
    let rps = |path: &str, baseline: bool| {
        let of_path = || rows.iter().filter(move |r| r.path == path);
        if baseline {
            of_path().find(|r| r.kind == RowKind::Baseline)
        } else {
            of_path().find(|r| r.kind == RowKind::Total).or_else(|| of_path().find(|r| r.kind == RowKind::Peak))
        }
        .map(|r| r.result.rps())
    };
    let pg = opts.store == Store::Postgres;
    let _ = writeln!(
        s,
        "
This build against the baseline binary `{}`, same run:
",
        path.display()
    );
    let _ = writeln!(s, "| path | this build req/s | baseline req/s | ratio | target |");
    let _ = writeln!(s, "|---|---:|---:|---:|---|");
    for (path, target) in
        [("POST /passwordless/start", if pg { 1.5 } else { 1.0 }), ("POST /oauth/token", if pg { 2.0 } else { 1.0 })]
    {
        if let (Some(new), Some(old)) = (rps(path, false), rps(path, true)) {
            let ratio = new / old.max(f64::MIN_POSITIVE);
            let _ = writeln!(
                s,
                "| `{path}` | {new:.0} | {old:.0} | **{ratio:.2}×** | ≥ {target:.1}×: **{}** |",
                if ratio >= target { "met" } else { "missed" }
            );
        }
    }
    s
}

impl Report {
    fn render(&self, ctx: &Ctx, opts: &Options, plan: &Plan, wrk: &str, elapsed: Duration) -> String {
        let mut s = report_header(ctx, opts, wrk, self.busy_before, elapsed);
        let base = self.rows.first().map_or(1.0, |r| r.result.rps());
        s.push_str(&render_rows(&self.rows, base));
        let token = self.rows.iter().find(|r| r.path == "POST /oauth/token").map(|r| r.result).unwrap_or_default();
        let _ = writeln!(
            s,
            "\nHalf-rate phase: target {:.0} req/s (½ of the peak), reached {:.0} req/s. \
             Token phase: {} codes generated in {:.1} s just before it (start + /dev/mailbox), \
             {} exchanged{}.",
            self.half_target,
            self.rows.iter().find(|r| r.kind == RowKind::Paced).map_or(0.0, |r| r.result.rps()),
            self.codes_made,
            self.codes_secs,
            token.requests.min(self.codes_made as u64),
            if token.exhausted > 0 {
                format!(
                    "; **the codes ran out**: {} exchanges reused a spent code (run with --codes {})",
                    token.exhausted,
                    (token.requests as usize).max(plan.codes) * 3 / 2
                )
            } else {
                String::new()
            }
        );
        s.push_str(&render_verdicts(&self.rows));
        s.push_str(&render_baseline(&self.rows, opts));
        if let Some(pg) = &self.pg {
            s.push_str(&pg.render(&self.rows));
        }
        s
    }
}

/// Above this share of the CPUs taken by other processes during a phase, the run is called noisy.
const NOISY: f64 = 0.05;

/// Clock ticks (USER_HZ, 100 on Linux) as CPU seconds.
fn cpu_secs(ticks: u64) -> String {
    format!("{:.1} CPU-s", ticks as f64 / 100.0)
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "unknown".to_owned(), |b| format!("{:.0} %", b * 100.0))
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, owned: &[&str]) -> Result<String, String> {
        let path = std::env::temp_dir().join(format!("xtask-extra-{}-{}.toml", std::process::id(), text.len()));
        std::fs::write(&path, text).unwrap();
        let result = read_extra_config(&path, owned).map_err(|e| e.to_string());
        std::fs::remove_file(&path).unwrap();
        result
    }

    #[test]
    fn extra_config_refuses_what_the_bench_owns_and_only_that() {
        let redis = "rate_limit = \"redis\"\n\n[redis]\nurl = \"redis://127.0.0.1:6379\"\n";
        assert!(check(redis, OWNED_KEYS).is_ok());
        assert!(check("listen = \"x\"\n", OWNED_KEYS).unwrap_err().contains("`listen`"));
        assert!(check("[limits]\nstart_per_ip = 1\n", OWNED_KEYS).unwrap_err().contains("`limits`"));
        assert!(check("limits.start_per_ip = 1\n", OWNED_KEYS).unwrap_err().contains("`limits`"));
        let pg = [OWNED_KEYS, PG_OWNED_KEYS].concat();
        assert!(check("store = \"postgres\"\n", &pg).unwrap_err().contains("`store`"));
        assert!(check("[[clients]]\nclient_id = \"a\"\n", &pg).unwrap_err().contains("`clients`"));
        assert!(check("[database]\nurl = \"x\"\n", &pg).unwrap_err().contains("`database`"));
        assert!(check("store = \"postgres\"\n", OWNED_KEYS).is_ok());
        let ses = [OWNED_KEYS, SES_OWNED_KEYS].concat();
        assert!(check("[ses]\nfrom_address = \"a@b.c\"\n", &ses).unwrap_err().contains("`ses`"));
        // A key of the same name inside another table is not the top-level one.
        assert!(check("[templates]\nemail = 1\n", &ses).is_ok());
    }

    #[test]
    fn options_parse_the_store_and_the_outage() {
        let args: Vec<String> =
            ["--store", "postgres", "--pool-size", "16", "--ses-outage", "--ses-rate", "100"].map(String::from).into();
        let opts = Options::parse(&args).unwrap();
        assert_eq!((opts.store, opts.pool_size, opts.ses_outage, opts.ses_rate), (Store::Postgres, 16, true, 100.0));
        assert!(opts.command().contains("--store postgres --pool-size 16 --ses-outage --ses-rate 100"));
        assert!(Options::parse(&["--store".to_owned(), "mysql".to_owned()]).is_err());
    }

    #[test]
    fn a_baseline_must_be_a_file_and_is_in_the_command() {
        let missing = ["--baseline".to_owned(), "/nonexistent/sesame".to_owned()];
        assert!(Options::parse(&missing).is_err());
        assert!(Options::parse(&["--baseline".to_owned()]).is_err());
        let file = std::env::current_exe().unwrap().display().to_string();
        let opts = Options::parse(&["--baseline".to_owned(), file.clone()]).unwrap();
        assert_eq!(opts.baseline.as_deref(), Some(Path::new(&file)));
        assert!(opts.command().ends_with(&format!(" --baseline {file}")));
    }
}
