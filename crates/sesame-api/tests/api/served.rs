//! The real binary as a child process, its JSON log collected.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// A `sesame serve` (or `worker`) child, `log_format = "json"`, whose stderr is collected line by line.
pub struct Served {
    pub base: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    pub fn start(config: &std::path::Path, command: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
            .arg("--config")
            .arg(config)
            .arg(command)
            .envs(env.iter().copied())
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sesame serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && (v["message"] == "sesame listening" || v["message"] == "delivery worker running")
                {
                    let _ = port_tx.send(Some(v["port"].as_u64().unwrap_or(0)));
                }
                lines.lock().expect("log").push(line);
            }
        });
        let port = port_rx.recv_timeout(Duration::from_secs(30)).ok().flatten().unwrap_or_else(|| {
            let _ = child.kill();
            panic!("sesame serve did not start: {:?}", log.lock().expect("log"));
        });
        Self { child, base: format!("http://127.0.0.1:{port}"), log, reader: Some(reader) }
    }

    /// Kills the server with SIGKILL (no shutdown at all) and returns everything it logged.
    pub fn kill(mut self) -> Vec<String> {
        let _ = Command::new("kill").arg("-KILL").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        std::mem::take(&mut *self.log.lock().expect("log"))
    }

    /// Stops the server (SIGTERM) and returns everything it logged.
    pub fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "sesame serve exited with {status} on SIGTERM");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("reader");
        }
        std::mem::take(&mut *self.log.lock().expect("log"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
