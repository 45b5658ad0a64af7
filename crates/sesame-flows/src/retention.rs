//! The sweeper: deletes what no request can use any more (expired challenges and grants, failed
//! or dropped outbox messages, old audit events), a batch at a time, in `serve` and `worker`.
//! On a shared store one replica sweeps at a time (`Retention::sweep` says when another one is).

use std::sync::Arc;
use std::time::Duration;

use sesame_ports::{Clock, Cutoffs, Retention, Swept};

/// How long each kind of row is kept, and how the sweeper paces itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    pub enabled: bool,
    /// Seconds between sweeps; a sweep goes on while batches come back full.
    pub interval_secs: u64,
    /// Rows of each kind per batch (one short transaction).
    pub batch: usize,
    /// Least pause between two full batches.
    pub pause_ms: u64,
    /// The share of time (percent) the sweeper may spend in batches while it works through a
    /// backlog: after each batch it rests long enough to stay within it.
    pub busy_percent: u32,
    /// Challenges are kept this long past their expiry.
    pub challenge_grace_secs: u64,
    /// Authorization codes, access and refresh tokens are kept this long past their expiry.
    pub grant_grace_secs: u64,
    /// Failed or dropped outbox messages are kept this many days (for investigation).
    pub outbox_days: u64,
    /// Audit events are kept this many days; 0 keeps them for ever.
    pub audit_days: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 60,
            batch: 1000,
            pause_ms: 20,
            busy_percent: 8,
            challenge_grace_secs: 3600,
            grant_grace_secs: 3600,
            outbox_days: 7,
            audit_days: 30,
        }
    }
}

impl RetentionSettings {
    pub fn cutoffs(&self, now: time::OffsetDateTime) -> Cutoffs {
        let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2));
        const DAY: u64 = 86_400;
        Cutoffs {
            challenges: now - secs(self.challenge_grace_secs),
            grants: now - secs(self.grant_grace_secs),
            outbox: now - secs(self.outbox_days.saturating_mul(DAY)),
            audit: (self.audit_days > 0).then(|| now - secs(self.audit_days.saturating_mul(DAY))),
        }
    }
}

/// One sweep: batches until the store has looked at everything (or another replica is sweeping).
///
/// # Errors
/// When the store fails; what was deleted before stays deleted.
pub async fn sweep_once(
    store: &dyn Retention,
    clock: &dyn Clock,
    settings: &RetentionSettings,
) -> Result<Swept, sesame_ports::StoreError> {
    let batch = settings.batch.max(1);
    let mut all = Swept::default();
    loop {
        let began = std::time::Instant::now();
        let Some(swept) = store.sweep(&settings.cutoffs(clock.now()), batch).await? else {
            break;
        };
        let took = began.elapsed();
        for (kind, n) in [
            ("challenges", swept.challenges),
            ("grants", swept.grants),
            ("outbox", swept.outbox),
            ("audit", swept.audit),
        ] {
            if n > 0 {
                metrics::counter!("sesame_retention_deleted_total", "kind" => kind).increment(n);
            }
        }
        all.challenges += swept.challenges;
        all.grants += swept.grants;
        all.outbox += swept.outbox;
        all.audit += swept.audit;
        if !swept.more {
            break;
        }
        let busy = f64::from(settings.busy_percent.clamp(1, 100)) / 100.0;
        let rest = took.mul_f64((1.0 - busy) / busy);
        tokio::time::sleep(Duration::from_millis(settings.pause_ms).max(rest)).await;
    }
    Ok(all)
}

/// Sweeps every `interval_secs` until `shutdown` resolves.
pub async fn run(
    store: Arc<dyn Retention>,
    clock: Arc<dyn Clock>,
    settings: RetentionSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    if !settings.enabled {
        return;
    }
    tokio::pin!(shutdown);
    let interval = Duration::from_secs(settings.interval_secs.max(1));
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            result = sweep_once(&*store, &*clock, &settings) => match result {
                Ok(swept) if swept.total() > 0 => tracing::info!(
                    challenges = swept.challenges,
                    grants = swept.grants,
                    outbox = swept.outbox,
                    audit = swept.audit,
                    "retention: expired rows deleted"
                ),
                Ok(_) => {}
                Err(e) => {
                    crate::measures::dependency_error("store");
                    tracing::warn!(error = ?e, "retention sweep failed; retrying at the next interval");
                }
            },
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
