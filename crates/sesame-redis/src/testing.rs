//! Throwaway Redis servers for tests, started from the machine's `redis-server` and `redis-cli`
//! (and `openssl` for a CA): one TLS-only server with a password, as ElastiCache with
//! in-transit encryption and AUTH, and a three-node Redis Cluster, plain or TLS. Each lives in
//! its own temporary folder on free ports and is killed, folder and all, when dropped. A
//! missing program fails the test, naming it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password every server made here requires.
pub const PASSWORD: &str = "redis-test-password-0123456789";

/// A temporary folder holding a test CA (`ca.crt`), a certificate for `localhost` and
/// `127.0.0.1` signed by it (`server.crt`), and a second CA that signed nothing (`other.crt`).
#[derive(Debug)]
pub struct TestCa {
    pub dir: PathBuf,
}

impl TestCa {
    /// Makes the CA and the server certificate with `openssl`.
    ///
    /// # Panics
    /// When `openssl` is missing or fails.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(sesame_unique("sesame-redis-"));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let ca = |key: &str, crt: &str, cn: &str| {
            let subj = format!("/CN={cn}");
            let args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt, "-days", "1"];
            run(&dir, "openssl", &[&args[..], &["-subj", &subj]].concat());
        };
        ca("ca.key", "ca.crt", "sesame test CA");
        ca("other.key", "other.crt", "another CA");
        let csr = ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr"];
        run(&dir, "openssl", &[&csr[..], &["-subj", "/CN=localhost"]].concat());
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext.cnf");
        run(
            &dir,
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
            ],
        );
        Self { dir }
    }

    /// The path of one of the folder's files, as a string for a config.
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn server_args(&self) -> Vec<String> {
        let tls = ["--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt"];
        let mut args: Vec<String> = tls.iter().map(|&a| self.resolve(a)).collect();
        args.extend(["--tls-auth-clients".into(), "no".into()]);
        args
    }

    fn resolve(&self, arg: &str) -> String {
        if arg.ends_with(".crt") || arg.ends_with(".key") { self.file(arg) } else { arg.to_owned() }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `redis-server` on a TLS port only, requiring [`PASSWORD`].
#[derive(Debug)]
pub struct TlsRedis {
    pub port: u16,
    pub ca: TestCa,
    child: Child,
}

impl TlsRedis {
    /// # Panics
    /// When `redis-server` (built with TLS) or `openssl` is missing, or the port does not open.
    pub fn start() -> Self {
        let ca = TestCa::new();
        let port = free_port();
        let mut args = vec!["--port".to_owned(), "0".into(), "--tls-port".into(), port.to_string()];
        args.extend(ca.server_args());
        let child = spawn_server(&ca.dir, &args);
        wait_for_port(port);
        Self { port, ca, child }
    }

    /// `rediss://` with the password, by host name (the certificate's name).
    pub fn url(&self) -> String {
        format!("rediss://:{PASSWORD}@localhost:{}/", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A three-node Redis Cluster (three primaries, no replicas) requiring [`PASSWORD`], formed with
/// `redis-cli --cluster create`; over TLS (client and cluster bus) when asked.
#[derive(Debug)]
pub struct RedisCluster {
    pub ports: Vec<u16>,
    pub ca: TestCa,
    tls: bool,
    children: Vec<Child>,
}

impl RedisCluster {
    /// Starts the nodes, joins them and waits until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    /// When `redis-server`/`redis-cli` (or `openssl`) is missing or the cluster does not form.
    pub fn start(tls: bool) -> Self {
        let ca = TestCa::new();
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 {
            let port = free_cluster_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let mut children = Vec::new();
        for &port in &ports {
            let mut args: Vec<String> = if tls {
                let mut a = vec!["--port".to_owned(), "0".into(), "--tls-port".into(), port.to_string()];
                a.extend(ca.server_args());
                a.extend(["--tls-cluster".into(), "yes".into()]);
                a
            } else {
                vec!["--port".into(), port.to_string()]
            };
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    "5000",
                    "--masterauth",
                    PASSWORD,
                ]
                .map(str::to_owned),
            );
            children.push(spawn_server(&ca.dir, &args));
        }
        let cluster = Self { ports, ca, tls, children };
        for &port in &cluster.ports {
            wait_for_port(port);
        }
        let nodes: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = cluster.cli_args();
        create.extend(["--cluster".into(), "create".into()]);
        create.extend(nodes);
        create.extend(["--cluster-replicas".into(), "0".into(), "--cluster-yes".into()]);
        run(&cluster.ca.dir, "redis-cli", &create.iter().map(String::as_str).collect::<Vec<_>>());
        let deadline = Instant::now() + Duration::from_secs(30);
        for &port in &cluster.ports {
            loop {
                let mut info = cluster.cli_args();
                info.extend(["-p".into(), port.to_string(), "cluster".into(), "info".into()]);
                let out = Command::new("redis-cli").args(&info).current_dir(&cluster.ca.dir).output();
                if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok")) {
                    break;
                }
                assert!(Instant::now() < deadline, "the test cluster did not reach cluster_state:ok on port {port}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// The seed URL a client is given: the first node, with the password.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://:{PASSWORD}@127.0.0.1:{}/", self.ports[0])
    }

    fn cli_args(&self) -> Vec<String> {
        let mut args =
            vec!["-h".to_owned(), "127.0.0.1".into(), "-a".into(), PASSWORD.into(), "--no-auth-warning".into()];
        if self.tls {
            args.extend(["--tls".into(), "--cacert".into(), self.ca.file("ca.crt")]);
        }
        args
    }

    /// Runs one `redis-cli` command against one node and returns what it printed.
    ///
    /// # Panics
    /// When `redis-cli` fails.
    pub fn cli(&self, node: usize, command: &[&str]) -> String {
        let mut args = self.cli_args();
        args.extend(["-p".into(), self.ports[node].to_string()]);
        args.extend(command.iter().map(|&c| c.to_owned()));
        let out = Command::new("redis-cli").args(&args).output().expect("redis-cli");
        assert!(out.status.success(), "redis-cli {command:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn sesame_unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("this test needs `{program}` on PATH (Debian: openssl, redis-server, redis-tools): {e}")
    });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spawn_server(dir: &Path, args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .args(["--bind", "127.0.0.1", "--requirepass", PASSWORD, "--save", "", "--appendonly", "no"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs `redis-server` (with TLS) on PATH: {e}"))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("redis-server did not open port {port}");
}
