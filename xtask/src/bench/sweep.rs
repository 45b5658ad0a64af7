//! `cargo xtask bench --store postgres --sweeper`: what the retention sweeper costs logins.
//!
//! Each phase is a fresh database holding a backlog of 1 million dead rows (500 000 expired
//! challenges, 250 000 failed outbox messages ten days old, 250 000 audit events forty days
//! old; vacuumed and checkpointed), then the start peak for 15 s on a fresh `sesame serve`: once with `[retention]` off,
//! once sweeping every second at the default pace (1000 rows of each kind per transaction, busy
//! at most 8 % of the time). Rounds alternate the order; the summary compares medians. The
//! rows left at the end show how much the sweeper deleted while the load ran.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;

use super::{Ctx, Options, WrkResult, check_start, ms, percent, report_header};

const BACKLOG: &str = "
INSERT INTO challenges (client_id, connection, identifier_kind, identifier, id, code_hash, send, created_at, expires_at)
  SELECT 'sesame-dev', 'email', 'email', 'dead' || g || '@example.com', 'dead' || g, sha256(g::text::bytea), 'code',
         now() - interval '2 days', now() - interval '2 days' + interval '3 minutes'
  FROM generate_series(1, 500000) g;
INSERT INTO outbox (id, channel, recipient, sealed, created_at, expires_at, status, reason, due_at, finished_at)
  SELECT 'dead' || g, 'email', 'dead' || g || '@example.com', '\\x'::bytea, now() - interval '10 days',
         now() - interval '10 days' + interval '3 minutes', 'failed', 'refused', now() - interval '10 days',
         now() - interval '10 days'
  FROM generate_series(1, 250000) g;
INSERT INTO audit_events (at, kind, detail)
  SELECT now() - interval '40 days', 'fn', 'dead ' || g FROM generate_series(1, 250000) g;
ANALYZE;
";

const DEAD: &str = "SELECT (SELECT count(*) FROM challenges WHERE identifier LIKE 'dead%') \
     + (SELECT count(*) FROM outbox WHERE id LIKE 'dead%') \
     + (SELECT count(*) FROM audit_events WHERE detail LIKE 'dead %')";

#[derive(Debug)]
pub(super) struct SweepRow {
    round: u32,
    sweeping: bool,
    peak: WrkResult,
    /// Dead rows left when the peak ended (of 1 000 000).
    left: u64,
}

#[derive(Debug)]
pub(super) struct SweepReport {
    rows: Vec<SweepRow>,
    busy_before: Option<f64>,
}

pub(super) fn sweeper_phases(ctx: &Ctx, rounds: u32) -> anyhow::Result<SweepReport> {
    let pg = ctx.pg.as_ref().context("--sweeper needs --store postgres")?;
    let busy_before = super::cpu_busy(Duration::from_secs(1));
    let length = ctx.plan.start;
    let mut rows = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for sweeping in order {
            let label = if sweeping { "on" } else { "off" };
            let tables =
                if sweeping { "\n[retention]\ninterval_secs = 1\n" } else { "\n[retention]\nenabled = false\n" };
            let server = ctx.server_tables(&format!("sweep-{round}-{label}"), tables)?;
            let db = server.db.as_ref().context("a database")?;
            eprintln!("xtask: round {}/{rounds}, sweeper {label}: writing a backlog of 1 000 000 dead rows", round + 1);
            pg.sql(db, BACKLOG)?;
            // Vacuumed now, so the insert's own autovacuum does not land in one phase's peak.
            pg.sql(db, "VACUUM (ANALYZE)")?;
            pg.checkpoint()?;
            check_start(&server, &format!("bench-{}-sweep{round}{label}@example.com", ctx.run_id))?;
            let peak = ctx.wrk(
                "start.lua",
                &server,
                ctx.plan.connections,
                length,
                &[("BENCH_PREFIX", format!("sweep{round}{label}"))],
            )?;
            let left: u64 = pg.sql(db, DEAD)?.trim().parse().context("dead row count")?;
            eprintln!("xtask: {:.0} starts/s; {left} dead rows left", peak.rps());
            drop(server);
            rows.push(SweepRow { round, sweeping, peak, left });
        }
    }
    Ok(SweepReport { rows, busy_before })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

impl SweepReport {
    pub(super) fn render(&self, ctx: &Ctx, opts: &Options, wrk: &str, elapsed: Duration) -> String {
        let mut s = report_header(ctx, opts, wrk, self.busy_before, elapsed);
        let _ = writeln!(
            s,
            "| round | sweeper | start req/s | p50 | p99 | dead rows deleted during the peak | errors | other CPU |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} |",
                r.round + 1,
                if r.sweeping { "on" } else { "off" },
                r.peak.rps(),
                ms(r.peak.p50_us),
                ms(r.peak.p99_us),
                1_000_000_u64.saturating_sub(r.left),
                r.peak.non_2xx + r.peak.socket_errors,
                percent(r.peak.other_cpu),
            );
        }
        let med = |on: bool| median(self.rows.iter().filter(|r| r.sweeping == on).map(|r| r.peak.rps()).collect());
        let (on, off) = (med(true), med(false));
        let ratio = on / off.max(f64::MIN_POSITIVE);
        let pairs: Vec<String> = (0..self.rows.len() / 2)
            .map(|i| {
                let round: Vec<&SweepRow> = self.rows.iter().filter(|r| r.round as usize == i).collect();
                let on = round.iter().find(|r| r.sweeping).map_or(0.0, |r| r.peak.rps());
                let off = round.iter().find(|r| !r.sweeping).map_or(1.0, |r| r.peak.rps());
                format!("{:.3}", on / off.max(f64::MIN_POSITIVE))
            })
            .collect();
        let _ = writeln!(s, "\nPer round, on / off: {}.", pairs.join(", "));
        let _ = writeln!(
            s,
            "\nStart throughput with the sweeper deleting / without it: {on:.0} / {off:.0} req/s = **{ratio:.3}** \
             (medians; target ≥ 0.90: {}).",
            if ratio >= 0.90 { "met" } else { "missed" }
        );
        s
    }
}
