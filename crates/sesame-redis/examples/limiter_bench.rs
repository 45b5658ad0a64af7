//! Throughput of the Redis limiter: `checks` checks of a 4-rule request (IP, identifier,
//! client, country prefix), `concurrency` at a time, through `RedisLimiter::check`.
//!
//! `cargo run --release -p sesame-redis --example limiter_bench -- [checks] [concurrency]`
//! (Redis from `REDIS_URL`, default `redis://127.0.0.1:6379`). `bench.sh` runs it next to
//! `redis-benchmark` of the same script.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sesame_ports::{LimitRule, RateLimiter};
use sesame_redis::{RedisConfig, RedisLimiter};
use time::OffsetDateTime;

/// Large enough that every check is allowed and writes all four buckets: the costly path.
fn rules() -> Vec<LimitRule> {
    ["ip:203.0.113.7", "identifier:user@example.com", "client:bench-app", "country:+33"]
        .into_iter()
        .map(|key| LimitRule::new(key, 1_000_000_000, Duration::from_secs(3600), 1))
        .collect()
}

fn arg(n: usize, default: usize) -> anyhow::Result<usize> {
    std::env::args().nth(n).map_or(Ok(default), |a| a.parse().with_context(|| format!("argument {n}: {a}")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let checks = arg(1, 50_000)?;
    let concurrency = arg(2, 32)?.max(1);
    let config = RedisConfig {
        url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        key_prefix: format!("bench-{}-{}:", std::process::id(), OffsetDateTime::now_utc().unix_timestamp()),
        timeout_ms: 1_000,
        ..RedisConfig::default()
    };
    let limiter = Arc::new(RedisLimiter::connect(&config).await?);
    let rules = Arc::new(rules());

    for _ in 0..1_000 {
        limiter.check(&rules, OffsetDateTime::now_utc()).await?;
    }

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (limiter, rules, next) = (Arc::clone(&limiter), Arc::clone(&rules), Arc::clone(&next));
            tokio::spawn(async move {
                let (mut allowed, mut failed) = (0usize, 0usize);
                while next.fetch_add(1, Ordering::Relaxed) < checks {
                    match limiter.check(&rules, OffsetDateTime::now_utc()).await {
                        Ok(d) if d.allowed => allowed += 1,
                        Ok(_) => {}
                        Err(_) => failed += 1,
                    }
                }
                (allowed, failed)
            })
        })
        .collect();
    let (mut allowed, mut failed) = (0, 0);
    for worker in workers {
        let (a, f) = worker.await?;
        allowed += a;
        failed += f;
    }
    let elapsed = started.elapsed();
    if failed > 0 {
        bail!("{failed} of {checks} checks failed");
    }

    let rate = checks as f64 / elapsed.as_secs_f64();
    println!(
        "limiter: {checks} checks of 4 rules, {concurrency} concurrent, {:.2} s, {allowed} allowed",
        elapsed.as_secs_f64()
    );
    println!("checks_per_sec={rate:.0}");
    Ok(())
}
