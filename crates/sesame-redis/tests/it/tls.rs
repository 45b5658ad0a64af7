//! `rediss://` with a password, as ElastiCache with in-transit encryption and AUTH is reached:
//! a local `redis-server` on a TLS port only, with a certificate from a CA made for the test
//! (`openssl`), trusted through `ca_file`. The limiter and the replay guard meet their contracts
//! over it; plain `redis://`, an untrusted certificate and a wrong password all fail.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sesame_ports::RateLimiter as _;
use sesame_ports::testkit;
use sesame_redis::{RedisConfig, RedisLimiter};

const PASSWORD: &str = "tls-test-password-0123456789";

struct TlsRedis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(dir: &Path, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("this test needs `{}` on PATH (Debian: openssl, redis-server): {e}", args[0]));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TlsRedis {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(testkit::unique("sesame-redis-tls-"));
        std::fs::create_dir_all(&dir).unwrap();
        let subj = |cn: &str| format!("/CN={cn}");
        run(
            &dir,
            &[
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "1",
                "-subj",
                &subj("sesame test CA"),
            ],
        );
        run(
            &dir,
            &[
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                &subj("localhost"),
            ],
        );
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        run(
            &dir,
            &[
                "openssl",
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
        // A second CA that signed nothing: trusting it must not be enough.
        run(
            &dir,
            &[
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "other.key",
                "-out",
                "other.crt",
                "-days",
                "1",
                "-subj",
                &subj("another CA"),
            ],
        );
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt"])
            .args(["--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "", "--appendonly", "no"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("this test needs `redis-server` (with TLS) on PATH: {e}"));
        let server = Self { child, port, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not open its TLS port {port}");
    }

    fn config(&self, url: String, ca: &str) -> RedisConfig {
        RedisConfig {
            url,
            ca_file: self.dir.join(ca).display().to_string(),
            key_prefix: format!("{}:", testkit::unique("sesame-tls:")),
            timeout_ms: 2_000,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_password_the_limiter_and_replay_guard_meet_their_contracts() {
    let redis = TlsRedis::start();
    let url = format!("rediss://:{PASSWORD}@localhost:{}/", redis.port);
    let limiter = Arc::new(RedisLimiter::connect(&redis.config(url.clone(), "ca.crt")).await.expect("TLS connect"));
    testkit::rate_limiter(Arc::clone(&limiter)).await;
    testkit::replay_guard(limiter).await;

    // The ways it must not work.
    let plain = format!("redis://:{PASSWORD}@localhost:{}/", redis.port);
    let plain = RedisLimiter::connect_lazy(&RedisConfig { ca_file: String::new(), ..redis.config(plain, "ca.crt") });
    assert!(plain.expect("lazy").ping().await.is_err(), "plain TCP to a TLS port");
    let untrusted = RedisLimiter::connect_lazy(&redis.config(url.clone(), "other.crt")).expect("lazy");
    assert!(untrusted.ping().await.is_err(), "a certificate from a CA not trusted");
    let wrong = format!("rediss://:not-the-password@localhost:{}/", redis.port);
    let wrong = RedisLimiter::connect_lazy(&redis.config(wrong, "ca.crt")).expect("lazy");
    assert!(wrong.ping().await.is_err(), "a wrong password");
}
