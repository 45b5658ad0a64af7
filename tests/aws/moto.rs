//! The local AWS emulator (moto server) for the SES and SNS adapter tests, shared by their test
//! binaries (`#[path]`-included as `mod moto`).
//!
//! `TEST_AWS_ENDPOINT` names a running moto (as `cargo xtask test` may start one); otherwise each
//! test starts its own from `.venv-moto` on a free loopback port and kills it when dropped. Tests
//! on a shared server never reset it: they use their own sender and recipient addresses and look
//! only at their own messages.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A moto server: the shared one, or one this test owns.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
    own: Option<OwnServer>,
}

#[derive(Debug)]
struct OwnServer {
    child: Child,
    log: PathBuf,
}

impl Moto {
    /// The shared server of `TEST_AWS_ENDPOINT`, or a fresh one of this test's own.
    pub async fn start() -> Self {
        match std::env::var("TEST_AWS_ENDPOINT") {
            Ok(endpoint) if !endpoint.trim().is_empty() => {
                let endpoint = endpoint.trim().trim_end_matches('/').to_owned();
                if let Err(e) = data_at(&endpoint).await {
                    panic!("TEST_AWS_ENDPOINT={endpoint} does not answer like a moto server: {e}");
                }
                Self { endpoint, own: None }
            }
            _ => Self::start_own().await,
        }
    }

    /// A fresh server of this test's own, even when `TEST_AWS_ENDPOINT` is set: for tests that
    /// stop it.
    pub async fn start_own() -> Self {
        let server = moto_server();
        let mut last_error = String::new();
        // A free port found by binding port 0 may be taken again before moto binds it: retry.
        for _ in 0..3 {
            let port = free_port();
            let endpoint = format!("http://127.0.0.1:{port}");
            let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("moto-{port}.log"));
            let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
            let child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log file handle"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", server.display()));
            let mut moto = Self { endpoint, own: Some(OwnServer { child, log }) };
            match moto.wait_until_ready().await {
                Ok(()) => return moto,
                Err(e) => last_error = e,
            }
            moto.stop();
        }
        panic!("moto did not start: {last_error}");
    }

    /// `http://127.0.0.1:<port>`: what `endpoint_url` should be.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Everything moto has recorded (`/moto-api/data.json`): `.ses.Message[]`, `.sns.SMS[]`, …
    pub async fn data(&self) -> serde_json::Value {
        data_at(&self.endpoint).await.unwrap_or_else(|e| panic!("reading {}/moto-api/data.json: {e}", self.endpoint))
    }

    /// How many emails SES was sent, by first recipient.
    /// Polls (every 50 ms, `tries` times) until each of `addresses` has had an email; returns
    /// those that still have none.
    #[allow(dead_code, reason = "used by the HTTP suite (faults, shutdown), not by the adapter tests")]
    pub async fn awaiting_emails<'a>(&self, addresses: &[&'a str], tries: u32) -> Vec<&'a str> {
        let mut missing = addresses.to_vec();
        for _ in 0..tries {
            let counts = self.emails_by_recipient().await;
            missing.retain(|to| !counts.contains_key(*to));
            if missing.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        missing
    }

    #[allow(dead_code, reason = "used by the HTTP suite (faults, shutdown), not by the adapter tests")]
    pub async fn emails_by_recipient(&self) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for m in self.data().await["ses"]["Message"].as_array().into_iter().flatten() {
            if let Some(to) = m["destinations"]["ToAddresses"][0].as_str() {
                *counts.entry(to.to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Kills a server this test owns; later calls to it are refused. Panics on a shared server.
    pub fn stop(&mut self) {
        let own = self.own.as_mut().expect("only a server of this test's own can be stopped");
        let _ = own.child.kill();
        let _ = own.child.wait();
    }

    async fn wait_until_ready(&mut self) -> Result<(), String> {
        let own = self.own.as_mut().expect("own server");
        // moto answers after 1.1 to 1.6 s on an idle machine; parallel tests on 2 cores are slower.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = own.child.try_wait() {
                return Err(format!("moto exited with {status}: {}", tail(&own.log)));
            }
            if data_at(&self.endpoint).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("moto did not answer on {} within 60 s: {}", self.endpoint, tail(&own.log)))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(own) = self.own.as_mut() {
            let _ = own.child.kill();
            let _ = own.child.wait();
            // The log only matters when the test failed.
            if !std::thread::panicking() {
                let _ = std::fs::remove_file(&own.log);
            }
        }
    }
}

/// `.venv-moto/bin/moto_server` of the workspace; fails the test, saying how to install it.
fn moto_server() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let server = root.join(".venv-moto/bin/moto_server");
    if !server.is_file() {
        panic!(
            "these tests need the local AWS emulator: run `bash tests/aws/moto.sh install` in {} \
             (or set TEST_AWS_ENDPOINT to a running moto server); {} is missing",
            root.canonicalize().unwrap_or(root.clone()).display(),
            server.display()
        );
    }
    server
}

async fn data_at(endpoint: &str) -> Result<serde_json::Value, String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(|e| e.to_string())?;
    let response = client.get(format!("{endpoint}/moto-api/data.json")).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    // moto labels it application/javascript, but the body is JSON.
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// A loopback port nothing listens on at the moment.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding a free port").port()
}

/// A string no other test (in this process or another) will use: for addresses and numbers on a
/// shared server.
pub fn unique() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos
        ^ (u64::from(std::process::id()) << 40)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // A cheap avalanche, so that close timestamps give unrelated low digits.
    let mixed = (mixed ^ (mixed >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed ^ (mixed >> 27)
}

fn tail(log: &Path) -> String {
    let mut text = String::new();
    let _ = std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut text));
    let lines: Vec<&str> = text.lines().collect();
    format!("log {}:\n{}", log.display(), lines[lines.len().saturating_sub(20)..].join("\n"))
}

/// Set in the environment of a test process started by [`run_in_child`].
pub const CHILD_MARKER: &str = "SESAME_AWS_IT_CHILD";

/// Whether this process is the child started by [`run_in_child`].
pub fn in_child() -> bool {
    std::env::var_os(CHILD_MARKER).is_some()
}

/// Runs the test `test` (its full path in the binary) in a fresh copy of this test binary, with
/// `env` added to a cleaned environment, and fails if it fails. For tests of the AWS chain, which
/// reads the process environment: edition 2024 makes `set_var` unsafe, and it would leak into the
/// tests running in parallel.
pub fn run_in_child(test: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut command = Command::new(exe);
    command.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    // Nothing of the developer's AWS setup may leak in: only what the test gives.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(&key);
        }
    }
    command.env("AWS_CONFIG_FILE", "/dev/null").env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    command.env("AWS_EC2_METADATA_DISABLED", "true").env(CHILD_MARKER, "1").envs(env.iter().copied());
    let output = command.output().expect("running the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test {test} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
