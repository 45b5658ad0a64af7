//! `cargo xtask`: the project's own commands.
//!
//! - `test`: everything CI checks — fmt, clippy, the whole test suite against the real
//!   services, and the Auth0 SDK compatibility tests.
//! - `lint`: fmt and clippy only.
//! - `bench`: load on the hot paths over loopback against a release build (docs/benchmarks.md).

mod bench;
mod fuzz;
mod up;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("lint") => lint(),
        Some("bench") => bench::bench(&args[1..]),
        Some("up") => up::up(&args[1..]),
        Some("faults") => faults(),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("soak") => bench::soak(&args[1..]),
        Some("down") => up::down(&args[1..]),
        Some("mail") => up::mail(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|lint|bench|soak|up|down|mail|faults|fuzz>\n  test [--no-deploy] [--no-fuzz] [--no-sdk] [--no-browser] [--no-openapi] [--no-up]  fmt, clippy, all tests (memory and Postgres), Auth0 SDK and\n                   browser tests, the OpenAPI document against a live server (schemathesis)\n  lint             fmt and clippy\n  bench [--quick] [--codes N] [--config extra.toml] [--store postgres] [--ses-outage]\n                   wrk load on /passwordless/start and /oauth/token vs /health (release build);\n                   --store postgres adds the pgbench floor; --ses-outage: start latency while SES fails;\n                   --ops: size, start-up, memory, metrics cost; --store postgres --sweeper: retention cost;\n                   --management: users-by-email and client_credentials (and their pgbench floor)\n  up [--port 8080] [--moto-port 4566] [--email ADDRESS] [--release] [--database sesame_local] [--state-dir DIR]\n                   Postgres, Redis, the AWS emulator and `sesame serve` in production mode, and a first login\n  down             stop what up started\n  faults           fault injection: Postgres, Redis, the AWS emulator away in turn under load, kill -9, a worker takes over\n  mail             the emails and SMS the emulator was sent\n  fuzz [--seconds N] [--target NAME]...\n                   the cargo-fuzz targets of fuzz/, N seconds each (default 20; cargo xtask test: 20)\n  soak [--minutes 10] [--rate N] [--redis] [--store postgres] (--help for all)\n                   whole logins at half the measured peak for N minutes: errors, p99 drift, RSS"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The checkout this xtask was run from. `cargo run` sets `CARGO_MANIFEST_DIR` at run time too:
/// that one wins, since with a shared `CARGO_TARGET_DIR` the binary cargo runs may have been built
/// (and its compile-time path baked in) from another checkout of the same sources.
fn root() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `CARGO_TARGET_DIR`, else `target/` at the workspace root.
fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root().join("target"), PathBuf::from)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.current_dir(root()).status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn lint() -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
}

/// Checks the services the tests need answer, and says which is missing if not.
fn check_services() -> anyhow::Result<()> {
    for (name, addr) in [("PostgreSQL", "127.0.0.1:5432"), ("Redis", "127.0.0.1:6379")] {
        let socket: std::net::SocketAddr = addr.parse()?;
        if let Err(e) = std::net::TcpStream::connect_timeout(&socket, std::time::Duration::from_secs(2)) {
            bail!("{name} is not answering on {addr} ({e}); start it (see README, 'Running the tests')");
        }
    }
    Ok(())
}

/// `cargo xtask faults`: the fault-injection test alone, with its figures (it also runs in the
/// HTTP suite of `cargo xtask test`).
fn faults() -> anyhow::Result<()> {
    check_services()?;
    run(Command::new("bash").args(["tests/aws/moto.sh", "install"]))?;
    run(cargo().args(["test", "--package", "sesame-api", "--test", "api", "faults::", "--", "--nocapture"]))
}

/// `cargo xtask up` on free ports, a database and state folder of its own (a developer's own
/// stack is left alone), then `cargo xtask down`, whatever `up` did.
fn up_and_down() -> anyhow::Result<()> {
    let free = || -> anyhow::Result<String> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string())
    };
    let state = target_dir().join("up-test");
    let state = if state.is_absolute() { state } else { root().join(state) };
    let _ = std::fs::remove_file(state.join("state"));
    let xtask = |args: &[&str]| {
        let mut c = cargo();
        c.args(["run", "--quiet", "--package", "xtask", "--"]).args(args).arg("--state-dir").arg(&state);
        c
    };
    let (port, moto) = (free()?, free()?);
    let up = run(&mut xtask(&["up", "--port", &port, "--moto-port", &moto, "--database", "sesame_up_test"]));
    let down = run(&mut xtask(&["down"]));
    up.and(down)
}

fn test(args: &[String]) -> anyhow::Result<()> {
    let skip = |what: &str| args.iter().any(|a| *a == format!("--no-{what}"));
    lint()?;
    if !skip("deploy") {
        // deploy/Dockerfile: hadolint and the image's must-haves (no container runtime here).
        run(Command::new("bash").arg("tests/deploy/run.sh"))?;
        // deploy/terraform: python-hcl2 parse, checkov, structural checks, terraform fmt.
        run(Command::new("bash").arg("tests/deploy/terraform.sh"))?;
    }
    check_services()?;
    // The SES/SNS tests start the local AWS emulator (moto) from .venv-moto.
    run(Command::new("bash").args(["tests/aws/moto.sh", "install"]))?;
    run(cargo().args(["test", "--workspace", "--all-targets"]))?;
    // The HTTP suite once more, on Postgres instead of the embedded store.
    run(cargo().args(["test", "--package", "sesame-api", "--test", "api"]).env("TEST_STORE", "postgres"))?;
    if !skip("fuzz") {
        // Every libFuzzer target of fuzz/ for 20 s on its seed corpus; a crash fails the run.
        fuzz::fuzz(&[])?;
    }
    if skip("sdk") && skip("browser") && skip("openapi") && skip("up") {
        return Ok(());
    }
    run(cargo().args(["build", "--package", "sesame-api", "--bin", "sesame"]))?;
    let target = target_dir();
    let target = if target.is_absolute() { target } else { root().join(target) };
    let binary = target.join("debug").join("sesame");
    if !skip("sdk") {
        run(Command::new("bash").arg("tests/sdk/run.sh").arg(&binary))?;
        // The same suites on Postgres.
        run(Command::new("bash").arg("tests/sdk/run.sh").arg(&binary).env("SDK_STORE", "postgres"))?;
    }
    if !skip("browser") {
        run(Command::new("bash").arg("tests/browser/run.sh").arg(&binary))?;
    }
    if !skip("openapi") {
        // GET /openapi.json against the server it describes (schemathesis).
        run(Command::new("bash").arg("tests/openapi/run.sh").arg(&binary))?;
    }
    if !skip("up") {
        // The local full stack as README and docs/deploy-aws.md give it: up (with its first
        // login), then down, as a separate command so its options parse as a user's do.
        up_and_down()?;
    }
    Ok(())
}
