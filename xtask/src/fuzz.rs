//! `cargo xtask fuzz [--seconds N] [--target NAME]…`: the libFuzzer targets of `fuzz/`
//! (cargo-fuzz), each for N seconds (default 20) on a temporary copy of its seed corpus.
//!
//! 1. cargo-fuzz, pinned, is installed when missing (`cargo install --locked`).
//! 2. All targets (or the named ones) are built once: `cargo fuzz build --sanitizer none`, with
//!    `RUSTC_BOOTSTRAP=1`, since cargo-fuzz passes `-Z` flags and only a stable toolchain is
//!    assumed; Sesame forbids `unsafe`, so AddressSanitizer would mostly slow the runs down.
//! 3. Each target runs on a copy of `fuzz/corpus/<target>/` (the committed seeds stay as they
//!    are), with `-max_total_time=N -print_final_stats=1`; what it finds lands in the run's own
//!    directory under `<target dir>/fuzz-runs/<target>/`.
//! 4. Per target: executions (libFuzzer's `stat::number_of_executed_units`), corpus size before
//!    and after, crashes. Any crash fails the command, naming the input and the log; keep the
//!    input as `fuzz/corpus/<target>/seed-regression-<what>` with the fix.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};

use crate::{cargo, root, run, target_dir};

/// The cargo-fuzz release `cargo xtask fuzz` installs (and expects).
const CARGO_FUZZ_VERSION: &str = "0.13.2";
const DEFAULT_SECONDS: u64 = 20;

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--target NAME]...
  --seconds N    how long each target runs (default 20)
  --target NAME  only this target (repeatable); the targets are fuzz/fuzz_targets/*.rs";

struct Options {
    seconds: u64,
    targets: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut opts = Self { seconds: DEFAULT_SECONDS, targets: Vec::new() };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--seconds" => {
                    let n = it.next().context("--seconds needs a number")?;
                    opts.seconds = n.parse().with_context(|| format!("--seconds {n:?}"))?;
                    ensure!(opts.seconds >= 1, "--seconds must be at least 1");
                }
                "--target" => opts.targets.push(it.next().context("--target needs a name")?.clone()),
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        Ok(opts)
    }
}

/// What one target's run gave.
struct Outcome {
    target: String,
    executions: Option<u64>,
    seeds: usize,
    corpus: usize,
    crashes: Vec<PathBuf>,
    log: PathBuf,
    failed: bool,
    secs: f64,
}

pub(crate) fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let opts = Options::parse(args)?;
    let fuzz_dir = root().join("fuzz");
    let all = targets(&fuzz_dir)?;
    let chosen: Vec<String> = if opts.targets.is_empty() {
        all.clone()
    } else {
        for t in &opts.targets {
            ensure!(all.contains(t), "no fuzz target {t:?}; the targets are: {}", all.join(", "));
        }
        opts.targets.clone()
    };
    ensure_cargo_fuzz()?;

    let host = host_triple()?;
    let build_dir = absolute(target_dir()).join("fuzz");
    let mut build = cargo();
    build
        .args(["fuzz", "build", "--sanitizer", "none", "--codegen-units", "16", "--target", &host, "--target-dir"])
        .arg(&build_dir)
        .env("RUSTC_BOOTSTRAP", "1");
    if chosen.len() == 1 {
        build.args(&chosen);
    }
    let began = Instant::now();
    run(&mut build)?;
    eprintln!("xtask: fuzz targets built in {:.0} s", began.elapsed().as_secs_f64());
    let bin_dir = build_dir.join(&host).join("release");

    let runs = absolute(target_dir()).join("fuzz-runs");
    let mut outcomes = Vec::new();
    for target in &chosen {
        outcomes.push(run_target(target, &bin_dir.join(target), &fuzz_dir, &runs, opts.seconds)?);
    }

    let mut report = String::new();
    let _ = writeln!(report, "\nfuzz: {} s per target", opts.seconds);
    let _ = writeln!(report, "{:<18} {:>12} {:>10} {:>9} {:>8}", "target", "executions", "per s", "corpus", "crashes");
    for o in &outcomes {
        let (execs, rate) = o.executions.map_or(("?".to_owned(), "?".to_owned()), |n| {
            (n.to_string(), format!("{:.0}", n as f64 / o.secs.max(0.001)))
        });
        let corpus = format!("{}→{}", o.seeds, o.corpus);
        let _ = writeln!(report, "{:<18} {execs:>12} {rate:>10} {corpus:>9} {:>8}", o.target, o.crashes.len());
    }
    std::io::stdout().lock().write_all(report.as_bytes())?;

    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed || !o.crashes.is_empty()).collect();
    if failures.is_empty() {
        return Ok(());
    }
    let mut message = String::from("fuzzing found a problem:");
    for o in failures {
        let bin = bin_dir.join(&o.target);
        if o.crashes.is_empty() {
            let _ = write!(message, "\n  {}: libFuzzer failed without a crash file; log {}", o.target, o.log.display());
        }
        let panic = panic_message(&o.log);
        for crash in &o.crashes {
            let _ = write!(
                message,
                "\n  {}: {}\n    {panic}\n    log: {}\n    reproduce: {} {}\n    keep it as fuzz/corpus/{}/seed-regression-<what> with the fix",
                o.target,
                crash.display(),
                o.log.display(),
                bin.display(),
                crash.display(),
                o.target
            );
        }
    }
    bail!("{message}")
}

/// Where the target panicked and the first line of what it said, from its log.
fn panic_message(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lines = text.lines().skip_while(|l| !l.contains("panicked at"));
    match (lines.next(), lines.next()) {
        (Some(at), Some(what)) => {
            let at = at.split_once("panicked at ").map_or(at, |(_, a)| a);
            format!("panicked at {at} {}", what.chars().take(300).collect::<String>())
        }
        _ => "no panic message in the log (a signal, a timeout or out of memory?)".to_owned(),
    }
}

/// The fuzz targets: `fuzz/fuzz_targets/<name>.rs`, sorted.
fn targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    ensure!(!names.is_empty(), "no fuzz targets in {}", dir.display());
    Ok(names)
}

/// Installs the pinned cargo-fuzz unless it is already there.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let installed = cargo()
        .args(["fuzz", "--version"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match installed {
        Some(v) if v.ends_with(CARGO_FUZZ_VERSION) => Ok(()),
        other => {
            eprintln!("xtask: cargo-fuzz {CARGO_FUZZ_VERSION} needed (found {other:?}); installing it");
            run(cargo().args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ_VERSION]))
        }
    }
}

/// The host's target triple (`rustc -vV`), the one the targets are built for and run on.
fn host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc).arg("-vV").output().with_context(|| format!("running {rustc} -vV"))?;
    ensure!(out.status.success(), "{rustc} -vV failed");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .context("no host triple in rustc -vV")
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() { path } else { root().join(path) }
}

fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Runs one target for `seconds` on a fresh copy of its corpus.
fn run_target(target: &str, bin: &Path, fuzz_dir: &Path, runs: &Path, seconds: u64) -> anyhow::Result<Outcome> {
    ensure!(bin.is_file(), "{} was not built", bin.display());
    let work = runs.join(target);
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    let corpus = work.join("corpus");
    let artifacts = work.join("artifacts");
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    let seeds = files(&fuzz_dir.join("corpus").join(target))?;
    for seed in &seeds {
        if let Some(name) = seed.file_name() {
            std::fs::copy(seed, corpus.join(name)).with_context(|| format!("copying {}", seed.display()))?;
        }
    }
    let log = work.join("fuzz.log");
    let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    eprintln!("xtask: fuzzing {target} for {seconds} s ({} seeds; log {})", seeds.len(), log.display());
    let began = Instant::now();
    let status = Command::new(bin)
        .arg(&corpus)
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .arg("-timeout=10")
        .arg("-rss_limit_mb=4096")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .env("RUST_BACKTRACE", "1")
        .current_dir(&work)
        .stdout(Stdio::null())
        .stderr(log_file)
        .status()
        .with_context(|| format!("starting {}", bin.display()))?;
    let secs = began.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let executions = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:").and_then(|n| n.trim().parse().ok()));
    Ok(Outcome {
        target: target.to_owned(),
        executions,
        seeds: seeds.len(),
        corpus: files(&corpus)?.len(),
        crashes: files(&artifacts)?,
        log,
        failed: !status.success(),
        secs,
    })
}
