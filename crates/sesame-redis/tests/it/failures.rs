//! Redis down, unreachable or hung: every call fails with an `Err` within its timeout (never a
//! panic or a hang), and the limiter recovers by itself once Redis is back.
use std::time::{Duration, Instant};

use sesame_ports::{LimitRule, RateLimiter, ReplayGuard, testkit};
use sesame_redis::{RedisConfig, RedisLimiter};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::TestRedis;

/// Far above the 250 ms timeout, far below a hang.
const GENEROUS: Duration = Duration::from_secs(5);

fn at(url: String) -> RedisConfig {
    RedisConfig { url, key_prefix: testkit::unique("sesame-test:") + ":", timeout_ms: 250, ..RedisConfig::default() }
}

fn one_rule() -> [LimitRule; 1] {
    [LimitRule::new("ip:198.51.100.1", 5, Duration::from_secs(60), 1)]
}

/// Accepts connections and never answers: a hung Redis.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_quickly() {
    let started = Instant::now();

    let connected = RedisLimiter::connect(&at("redis://127.0.0.1:1".into())).await;

    assert!(connected.is_err(), "nothing listens on port 1");
    assert!(started.elapsed() < GENEROUS, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_lazy_limiter_at_a_closed_port_returns_errors_quickly() {
    let limiter = RedisLimiter::connect_lazy(&at("redis://127.0.0.1:1".into())).unwrap();
    let started = Instant::now();

    let checked = limiter.check(&one_rule(), testkit::t0()).await;
    let guarded = limiter.first_use("jti", testkit::t0() + time::Duration::minutes(1), testkit::t0()).await;
    let checked_again = limiter.check(&one_rule(), testkit::t0()).await;

    let error = checked.unwrap_err();
    assert!(guarded.is_err());
    assert!(checked_again.is_err());
    assert!(format!("{:#}", error.0).contains("rate limits"), "{:#}", error.0);
    assert!(started.elapsed() < GENEROUS, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_redis_that_never_answers_times_out() {
    let (url, server) = silent_server().await;
    let started = Instant::now();

    let connected = RedisLimiter::connect(&at(url.clone())).await;
    let lazy = RedisLimiter::connect_lazy(&at(url)).unwrap();
    let checked = lazy.check(&one_rule(), testkit::t0()).await;

    assert!(connected.is_err());
    assert!(checked.is_err());
    assert!(started.elapsed() < GENEROUS, "took {:?}", started.elapsed());
    server.abort();
}

#[tokio::test]
async fn bad_settings_are_refused_at_startup() {
    let braces = RedisConfig { key_prefix: "{tenant}:".into(), ..RedisConfig::default() };
    let zero = RedisConfig { timeout_ms: 0, ..RedisConfig::default() };
    let url = RedisConfig { url: "http://example.com".into(), ..RedisConfig::default() };

    assert!(RedisLimiter::connect_lazy(&braces).is_err());
    assert!(RedisLimiter::connect_lazy(&zero).is_err());
    assert!(RedisLimiter::connect_lazy(&url).is_err());
}

/// A TCP relay to the test Redis that can be cut and restored on the same port.
struct Relay {
    port: u16,
    upstream: String,
    tasks: JoinSet<()>,
}

impl Relay {
    async fn start(redis_url: &str) -> Self {
        let url = url::Url::parse(redis_url).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(6379));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut relay = Self { port, upstream, tasks: JoinSet::new() };
        relay.serve(listener);
        relay
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        self.tasks.spawn(async move {
            let mut pipes = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                pipes.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }

    /// Drops the listener and every relayed connection: Redis is "down".
    async fn cut(&mut self) {
        self.tasks.shutdown().await;
    }

    async fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    fn url(&self, redis_url: &str) -> String {
        let mut url = url::Url::parse(redis_url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_recovers_without_a_restart_when_redis_comes_back() {
    let redis = TestRedis::new();
    let mut relay = Relay::start(&redis.config.url).await;
    let config = RedisConfig { url: relay.url(&redis.config.url), timeout_ms: 250, ..redis.config.clone() };
    let limiter = RedisLimiter::connect(&config).await.unwrap();
    let now = testkit::t0();
    assert!(limiter.check(&one_rule(), now).await.unwrap().allowed);

    relay.cut().await;
    let started = Instant::now();
    let while_down = limiter.check(&one_rule(), now).await;
    let still_down = limiter.check(&one_rule(), now).await;
    assert!(while_down.is_err() && still_down.is_err());
    assert!(started.elapsed() < GENEROUS, "took {:?}", started.elapsed());

    relay.restore().await;
    let deadline = Instant::now() + GENEROUS;
    let recovered = loop {
        match limiter.check(&one_rule(), now).await {
            Ok(d) => break d,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no recovery within {GENEROUS:?}: {:#}", e.0),
        }
    };
    assert!(recovered.allowed);
    assert_eq!(recovered.remaining, 3, "the bucket survived the outage: Redis kept it");
}
