//! `cargo xtask up` / `down` / `mail`: the production setup on one machine.
//!
//! `up` makes sure PostgreSQL and Redis answer (starting the machine's own when they are
//! installed but stopped, and saying which is missing otherwise), starts the AWS emulator
//! (moto, from `.venv-moto`) with a verified SES domain, creates a fresh `sesame_local`
//! database, writes `target/up/sesame.toml` in production mode (`store = "postgres"`,
//! `rate_limit = "redis"`, `email = "ses"`, `sms = "sns"`, a random server secret), runs
//! `sesame migrate` and `sesame client create`, starts `sesame serve` in the background, waits
//! for `/readyz`, and proves a first login end to end: a start for an address, the email read
//! back from the emulator, the code exchanged for tokens. It prints the time from its start to
//! that login. `mail` prints what the emulator was sent; `down` stops what `up` started.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use crate::bench::Http;
use crate::{cargo, root, run, target_dir};

const DATABASE: &str = "sesame_local";
/// `--state-dir`, else `target/up`: set once per command.
static STATE_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
const DOMAIN: &str = "sesame.local";
const REGION: &str = "us-east-1";

struct Options {
    database: String,
    port: u16,
    moto_port: u16,
    release: bool,
    email: String,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut opts = Self {
            database: DATABASE.into(),
            port: 8080,
            moto_port: 4566,
            release: false,
            email: format!("you@{DOMAIN}"),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value")).cloned();
            match arg.as_str() {
                "--port" => opts.port = value("--port")?.parse().context("--port")?,
                "--moto-port" => opts.moto_port = value("--moto-port")?.parse().context("--moto-port")?,
                "--email" => opts.email = value("--email")?,
                "--release" => opts.release = true,
                "--database" => opts.database = value("--database")?,
                "--state-dir" => set_state_dir(&value("--state-dir")?)?,
                other => bail!(
                    "unknown option {other} (up [--port N] [--moto-port N] [--email ADDRESS] [--release] \
                     [--database NAME] [--state-dir DIR])"
                ),
            }
        }
        Ok(opts)
    }
}

/// What `up` started, for `down`: one `key=value` a line in `target/up/state`.
fn state_dir() -> PathBuf {
    STATE_DIR
        .get_or_init(|| {
            let target = target_dir();
            let target = if target.is_absolute() { target } else { root().join(target) };
            target.join("up")
        })
        .clone()
}

fn set_state_dir(dir: &str) -> anyhow::Result<()> {
    STATE_DIR.set(PathBuf::from(dir)).map_err(|_| anyhow::anyhow!("--state-dir given twice"))
}

/// `down` and `mail` take only `--state-dir DIR`.
fn state_dir_option(args: &[String]) -> anyhow::Result<()> {
    match args {
        [] => Ok(()),
        [flag, dir] if flag == "--state-dir" => set_state_dir(dir),
        _ => bail!("the only option is --state-dir DIR"),
    }
}

fn read_state() -> Vec<(String, String)> {
    std::fs::read_to_string(state_dir().join("state"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

fn record(key: &str, value: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir().join("state"))
        .context("target/up/state")?;
    writeln!(file, "{key}={value}")?;
    Ok(())
}

fn answers(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(what: &str, addr: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !answers(addr) {
        ensure!(Instant::now() < deadline, "{what} did not start answering on {addr} within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// PostgreSQL and Redis on their standard local ports: already up, or started from the
/// machine's own installation, or a message naming what is missing.
fn services() -> anyhow::Result<()> {
    if answers("127.0.0.1:5432") {
        eprintln!("up: PostgreSQL answers on 127.0.0.1:5432");
    } else {
        let version = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).max());
        match version {
            Some(v) if installed("pg_ctlcluster") => {
                eprintln!("up: starting PostgreSQL {v}");
                run(Command::new("pg_ctlcluster").args(["--skip-systemctl-redirect", &v, "main", "start"]))?;
                wait_for("PostgreSQL", "127.0.0.1:5432", Duration::from_secs(30))?;
                record("postgres", &v)?;
            }
            _ => bail!(
                "PostgreSQL is not answering on 127.0.0.1:5432 and is not installed here (Debian: apt-get install postgresql); \
                 start one with trust auth for the user postgres"
            ),
        }
    }
    if answers("127.0.0.1:6379") {
        eprintln!("up: Redis answers on 127.0.0.1:6379");
    } else {
        ensure!(
            installed("redis-server"),
            "Redis is not answering on 127.0.0.1:6379 and redis-server is not installed (Debian: apt-get install redis-server)"
        );
        eprintln!("up: starting Redis");
        run(Command::new("redis-server").args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ]))?;
        wait_for("Redis", "127.0.0.1:6379", Duration::from_secs(10))?;
        record("redis", "6379")?;
    }
    ensure!(installed("psql"), "psql is not installed (Debian: apt-get install postgresql-client)");
    Ok(())
}

fn psql(sql: &str) -> anyhow::Result<()> {
    run(Command::new("psql").args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-qc",
        sql,
    ]))
}

fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

fn config(opts: &Options, secret: &str) -> String {
    let moto = format!("http://127.0.0.1:{}", opts.moto_port);
    format!(
        r#"# Written by `cargo xtask up`: the production adapters against local services.
issuer = "http://127.0.0.1:{port}/"
listen = "127.0.0.1:{port}"
server_secret = "{secret}"
store = "postgres"
rate_limit = "redis"
email = "ses"
sms = "sns"

[database]
url = "postgres://postgres@127.0.0.1:5432/{database}"

[redis]
url = "redis://127.0.0.1:6379"
key_prefix = "sesame-up:"

[ses]
from_address = "no-reply@{DOMAIN}"
from_name = "Sesame (local)"
region = "{REGION}"
endpoint_url = "{moto}"

[sns]
region = "{REGION}"
endpoint_url = "{moto}"

[delivery]
poll_ms = 100
"#,
        port = opts.port,
        database = opts.database,
    )
}

pub(crate) fn up(args: &[String]) -> anyhow::Result<()> {
    let opts = Options::parse(args)?;
    let began = Instant::now();
    ensure!(
        !state_dir().join("state").exists(),
        "a stack from an earlier `cargo xtask up` is still recorded in {}: run `cargo xtask down` first",
        state_dir().display()
    );
    std::fs::create_dir_all(state_dir())?;
    ensure!(!answers(&format!("127.0.0.1:{}", opts.port)), "port {} is taken (use --port)", opts.port);
    ensure!(!answers(&format!("127.0.0.1:{}", opts.moto_port)), "port {} is taken (use --moto-port)", opts.moto_port);

    services()?;
    run(Command::new("bash").args(["tests/aws/moto.sh", "install"]))?;
    let out = Command::new("bash")
        .args(["tests/aws/moto.sh", "start", &opts.moto_port.to_string()])
        .env("MOTO_LOG", state_dir().join("moto.log"))
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .context("tests/aws/moto.sh start")?;
    ensure!(out.status.success(), "starting the AWS emulator failed");
    let moto_pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    record("moto", &moto_pid)?;
    let endpoint = format!("http://127.0.0.1:{}", opts.moto_port);
    run(Command::new(root().join(".venv-moto/bin/python"))
        .arg("xtask/bench/ses_identity.py")
        .args([&endpoint, DOMAIN]))?;

    ensure!(
        opts.database.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "--database: lower-case letters, digits and _ only"
    );
    psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", opts.database))?;
    psql(&format!("CREATE DATABASE {}", opts.database))?;
    let config_path = state_dir().join("sesame.toml");
    std::fs::write(&config_path, config(&opts, &random_secret()?))?;

    let profile = if opts.release { "release" } else { "debug" };
    let mut build = cargo();
    build.args(["build", "--package", "sesame-api", "--bin", "sesame"]);
    if opts.release {
        build.arg("--release");
    }
    let building = Instant::now();
    run(&mut build)?;
    let built_in = building.elapsed();
    let target = target_dir();
    let target = if target.is_absolute() { target } else { root().join(target) };
    let binary = target.join(profile).join("sesame");
    let sesame = |args: &[&str]| {
        let mut c = Command::new(&binary);
        c.arg("--config").arg(&config_path).args(args);
        c.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing");
        c
    };
    run(&mut sesame(&["migrate"]))?;
    let out =
        sesame(&["client", "create", "--name", "Local app", "--json"]).output().context("sesame client create")?;
    ensure!(out.status.success(), "sesame client create failed: {}", String::from_utf8_lossy(&out.stderr));
    let client: Value = serde_json::from_slice(&out.stdout).context("sesame client create --json")?;
    let client_id = client["client_id"].as_str().context("no client_id from sesame client create")?.to_owned();

    let log = std::fs::File::create(state_dir().join("sesame.log"))?;
    // Its own session, so it outlives this command and a Ctrl-C in the terminal.
    let child = Command::new("setsid")
        .arg(&binary)
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting sesame serve (needs setsid, from util-linux)")?;
    record("sesame", &child.id().to_string())?;
    let addr: SocketAddr = ([127, 0, 0, 1], opts.port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if Http::new(addr).call("GET", "/readyz", None).is_ok_and(|(status, _)| status == 200) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "sesame serve was not ready within 30 s; see {}",
            state_dir().join("sesame.log").display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready = began.elapsed();

    // The first login, as an app would do it, the code taken from the email SES was sent.
    let start = json!({"client_id": client_id, "connection": "email", "email": opts.email, "send": "code"});
    let (status, body) = Http::new(addr).call("POST", "/passwordless/start", Some(&start.to_string()))?;
    ensure!(status == 200, "POST /passwordless/start answered {status}: {body}");
    let message = wait_for_mail(&endpoint, &opts.email)?;
    let code = code_in(&message).with_context(|| format!("no 6-digit code in the email: {message}"))?;
    let exchange = json!({
        "grant_type": "http://auth0.com/oauth/grant-type/passwordless/otp", "client_id": client_id,
        "realm": "email", "username": opts.email, "otp": code, "scope": "openid profile email",
    });
    let (status, body) = Http::new(addr).call("POST", "/oauth/token", Some(&exchange.to_string()))?;
    ensure!(status == 200, "POST /oauth/token answered {status}: {body}");
    let tokens: Value = serde_json::from_str(&body)?;
    ensure!(tokens["id_token"].is_string() && tokens["access_token"].is_string(), "no tokens in {body}");
    let login = began.elapsed();

    say(&format!(
        "Sesame is up at http://{addr}/ (production adapters: Postgres {database}, Redis, SES and SNS on the emulator at {endpoint})\n\
         config:  {config}\n\
         log:     {log}\n\
         client:  {client_id}\n\
         ready after {ready:.1?}; first login (start, email through SES, code → tokens) after {login:.1?}, \
         of which {built_in:.1?} building sesame\n\n\
         Try it:\n  curl -s http://{addr}/passwordless/start -H 'content-type: application/json' \\\n    \
         -d '{{\"client_id\":\"{client_id}\",\"connection\":\"email\",\"email\":\"{email}\",\"send\":\"code\"}}'\n  \
         cargo xtask mail        # what SES and SNS were sent (the emulator's API)\n  \
         cargo xtask down        # stop it all",
        config = config_path.display(),
        log = state_dir().join("sesame.log").display(),
        email = opts.email,
        database = opts.database,
    ))
}

/// One block of the command's output, on stdout.
fn say(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Everything the emulator recorded.
fn emulator_data(endpoint: &str) -> anyhow::Result<Value> {
    let addr: SocketAddr = endpoint.trim_start_matches("http://").parse().context("emulator address")?;
    let (status, body) = Http::new(addr).call("GET", "/moto-api/data.json", None)?;
    ensure!(status == 200, "the emulator answered {status}");
    serde_json::from_str(&body).context("the emulator's data.json")
}

fn messages_to(data: &Value, to: &str) -> Vec<Value> {
    data["ses"]["Message"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["destinations"]["ToAddresses"].as_array().is_some_and(|a| a.iter().any(|t| t == to)))
        .cloned()
        .collect()
}

fn wait_for_mail(endpoint: &str, to: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = messages_to(&emulator_data(endpoint)?, to).last() {
            return Ok(m["body"].as_str().unwrap_or_default().to_owned());
        }
        ensure!(Instant::now() < deadline, "no email to {to} reached the emulator within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first run of 4–40 digits standing alone: how a person finds the code.
fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit()).find(|t| (4..=40).contains(&t.len())).map(str::to_owned)
}

/// `cargo xtask mail`: the emails and SMS the emulator holds, newest last.
pub(crate) fn mail(args: &[String]) -> anyhow::Result<()> {
    state_dir_option(args)?;
    let port = config_value("endpoint_url").context("no stack is up (cargo xtask up)")?;
    let data = emulator_data(&port)?;
    for m in data["ses"]["Message"].as_array().into_iter().flatten() {
        say(&format!(
            "email to {} — {}\n{}\n",
            m["destinations"]["ToAddresses"],
            m["subject"].as_str().unwrap_or(""),
            m["body"].as_str().unwrap_or("")
        ))?;
    }
    for s in data["sns"]["SMS"].as_array().into_iter().flatten() {
        say(&format!("sms {s}\n"))?;
    }
    Ok(())
}

fn config_value(key: &str) -> Option<String> {
    let text = std::fs::read_to_string(state_dir().join("sesame.toml")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(&format!("{key} = \""))).map(|v| v.trim_end_matches('"').to_owned())
}

/// `cargo xtask down`: stops `sesame serve` (SIGTERM: it drains), the emulator, and the
/// services `up` had to start; keeps the database and the log.
pub(crate) fn down(args: &[String]) -> anyhow::Result<()> {
    state_dir_option(args)?;
    let state = read_state();
    if state.is_empty() {
        eprintln!("down: nothing recorded in {} (no stack is up)", state_dir().display());
        return Ok(());
    }
    for (what, value) in state.iter().rev() {
        match what.as_str() {
            "sesame" | "moto" => stop_pid(what, value)?,
            "redis" => {
                eprintln!("down: stopping the Redis that up started");
                let _ = Command::new("redis-cli").args(["-p", value, "shutdown", "nosave"]).status();
            }
            "postgres" => {
                eprintln!("down: stopping the PostgreSQL that up started");
                run(Command::new("pg_ctlcluster").args(["--skip-systemctl-redirect", value, "main", "stop"]))?;
            }
            _ => {}
        }
    }
    std::fs::remove_file(state_dir().join("state"))?;
    Ok(())
}

fn stop_pid(what: &str, pid: &str) -> anyhow::Result<()> {
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
    if !alive(pid) {
        return Ok(());
    }
    eprintln!("down: stopping {what} (pid {pid})");
    let _ = Command::new("kill").args(["-TERM", pid]).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(pid) {
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn is_zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}
