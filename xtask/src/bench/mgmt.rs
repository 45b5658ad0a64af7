//! `cargo xtask bench --management [--store postgres]`: what a backend's calls cost.
//!
//! - The baseline: `GET /health`, as in every bench.
//! - `GET /api/v2/users-by-email` with a backend's `client_credentials` token, each request for
//!   another of the users the store holds (100 000 written with SQL on Postgres, 2 000 made with
//!   `POST /api/v2/users` on the embedded store).
//! - `POST /oauth/token` with `grant_type=client_credentials`: signing an RS256 token and one
//!   audit row.
//! - With `--store postgres`, the floor of each: `pgbench` on the same Postgres, at the same
//!   concurrency, replaying the SQL the request runs (the two statements of a lookup by
//!   address; the audit insert of a token), on the same database.
//!
//! Each row also gives Sesame's own CPU per request (utime + stime of the server over the run).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, ensure};

use super::{Ctx, Http, Options, Row, RowKind, render_rows, render_verdicts, report_header};

const CLIENT: &str = "bench-m2m";
const SECRET: &str = "bench-m2m-secret-0123456789";
const ISSUER: &str = "https://sesame.bench/";
const PG_USERS: u64 = 100_000;
const MEMORY_USERS: u64 = 2_000;

fn audience() -> String {
    format!("{ISSUER}api/v2/")
}

fn client_table() -> String {
    format!(
        "\n[[clients]]\nclient_id = \"{CLIENT}\"\nname = \"Bench backend\"\napp_type = \"non_interactive\"\n\
         auth_method = \"client_secret_post\"\nclient_secret = \"{SECRET}\"\ngrant_types = [\"client_credentials\"]\n\
         api_scopes = {{ \"{}\" = [\"read:users\", \"create:users\"] }}\n",
        audience()
    )
}

/// The users `bench-user-<i>@example.com`, as `record_login` would have left them.
const SEED: &str = "
INSERT INTO users (user_id, connection, identifier_kind, identifier, email_verified, phone_verified, created_at,
  updated_at, last_login, logins_count)
SELECT 'email|' || lpad(to_hex(g), 24, '0'), 'email', 'email', 'bench-user-' || g || '@example.com', true, false,
  now() - (g || ' seconds')::interval, now(), now(), 1
FROM generate_series(1, {N}) g;
ANALYZE users;
";

/// The SQL of one `GET /api/v2/users-by-email` (`UserStore::list` with an identifier filter):
/// the page, then the count.
const LOOKUP: &str = r"\set i random(1, {N})
SELECT user_id, connection, identifier_kind, identifier, email_verified, phone_verified, created_at, updated_at, last_login, logins_count, blocked, name, nickname, picture, user_metadata, app_metadata FROM users WHERE identifier = 'bench-user-' || :i || '@example.com' ORDER BY created_at, user_id LIMIT 100 OFFSET 0;
SELECT count(*) AS n FROM users WHERE identifier = 'bench-user-' || :i || '@example.com';
";

/// The SQL of one `client_credentials` token: its audit row (the client comes from the cache,
/// the limiter is in memory, the signature is CPU).
const TOKEN_AUDIT: &str = "INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail) \
     VALUES (now(), 'client_credentials', 'bench-m2m', NULL, NULL, NULL, NULL, 'https://sesame.bench/api/v2/');\n";

#[derive(Debug)]
pub(super) struct MgmtReport {
    rows: Vec<Row>,
    users: u64,
    busy_before: Option<f64>,
}

fn token(http: &mut Http) -> anyhow::Result<String> {
    let body = format!(
        r#"{{"grant_type":"client_credentials","client_id":"{CLIENT}","client_secret":"{SECRET}","audience":"{}"}}"#,
        audience()
    );
    let (status, text) = http.call("POST", "/oauth/token", Some(&body))?;
    ensure!(status == 200, "client_credentials answered {status}: {text}");
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["access_token"].as_str().map(str::to_owned).context("no access_token")
}

pub(super) fn mgmt_phases(ctx: &Ctx) -> anyhow::Result<MgmtReport> {
    let plan = &ctx.plan;
    let shape = plan.shape();
    let busy_before = super::cpu_busy(Duration::from_secs(1));
    let mut rows = Vec::new();
    let phases = if ctx.pg.is_some() { 5 } else { 3 };

    eprintln!("xtask: phase 1/{phases}: baseline GET /health for {}s", plan.health.as_secs());
    let server = ctx.server("mgmt-health")?;
    let health = ctx.wrk("health.lua", &server, plan.connections, plan.health, &[])?;
    drop(server);
    rows.push(Row {
        phase: "baseline".into(),
        path: "GET /health".into(),
        load: shape.clone(),
        kind: RowKind::Peak,
        result: health,
    });

    let top = format!("issuer = \"{ISSUER}\"\n");
    let mut server = ctx.server_full("mgmt", None, &top, &client_table())?;
    let mut http = Http::new(server.addr);
    let bearer = token(&mut http)?;
    let users = match (&ctx.pg, &server.db) {
        (Some(pg), Some(db)) => {
            eprintln!("xtask: writing {PG_USERS} users");
            pg.sql(db, &SEED.replace("{N}", &PG_USERS.to_string()))?;
            PG_USERS
        }
        _ => {
            eprintln!("xtask: creating {MEMORY_USERS} users with POST /api/v2/users");
            let auth = format!("Bearer {bearer}");
            for i in 1..=MEMORY_USERS {
                let body =
                    format!(r#"{{"connection":"email","email":"bench-user-{i}@example.com","email_verified":true}}"#);
                let (status, text) = http.call_with(
                    "POST",
                    "/api/v2/users",
                    Some(("application/json", &body)),
                    &[("Authorization", &auth)],
                )?;
                ensure!(status == 201, "POST /api/v2/users answered {status}: {text}");
            }
            MEMORY_USERS
        }
    };
    let auth = format!("Bearer {bearer}");
    let (status, text) = http.call_with(
        "GET",
        "/api/v2/users-by-email?email=bench-user-1%40example.com",
        None,
        &[("Authorization", &auth)],
    )?;
    ensure!(status == 200 && text.contains("bench-user-1@example.com"), "users-by-email answered {status}: {text}");
    drop(http);

    eprintln!("xtask: phase 2/{phases}: GET /api/v2/users-by-email for {}s over {users} users", plan.token.as_secs());
    let env = [("BENCH_TOKEN", bearer.clone()), ("BENCH_USERS", users.to_string())];
    let lookup = ctx.wrk("users_by_email.lua", &server, plan.connections, plan.token, &env)?;
    rows.push(Row {
        phase: "users by email".into(),
        path: "GET /api/v2/users-by-email".into(),
        load: shape.clone(),
        kind: RowKind::Peak,
        result: lookup,
    });

    eprintln!("xtask: phase 3/{phases}: POST /oauth/token client_credentials for {}s", plan.token.as_secs());
    let env =
        [("BENCH_CLIENT", CLIENT.to_owned()), ("BENCH_SECRET", SECRET.to_owned()), ("BENCH_AUDIENCE", audience())];
    let m2m = ctx.wrk("client_credentials.lua", &server, plan.connections, plan.token, &env)?;
    rows.push(Row {
        phase: "machine-to-machine token".into(),
        path: "POST /oauth/token (client_credentials)".into(),
        load: shape.clone(),
        kind: RowKind::Peak,
        result: m2m,
    });

    if let (Some(pg), Some(db)) = (&ctx.pg, server.db.take()) {
        drop(server);
        for (n, (tag, label, sql)) in [
            ("lookup", "floor: pgbench, the SQL of users-by-email", LOOKUP.replace("{N}", &users.to_string())),
            ("m2m", "floor: pgbench, the SQL of client_credentials", TOKEN_AUDIT.to_owned()),
        ]
        .into_iter()
        .enumerate()
        {
            eprintln!("xtask: phase {}/{phases}: {label} for {}s", n + 4, plan.token.as_secs());
            let path = ctx.work.join(format!("mgmt-{tag}.sql"));
            std::fs::write(&path, sql).with_context(|| format!("writing {}", path.display()))?;
            pg.checkpoint()?;
            let (result, _) =
                pg.pgbench(&db, &path, "prepared", ctx, &ctx.work.join(format!("pgbench-mgmt-{tag}")), plan.token)?;
            rows.push(Row {
                phase: label.into(),
                path: "pgbench -M prepared".into(),
                load: shape.clone(),
                kind: RowKind::Floor,
                result,
            });
        }
    }
    Ok(MgmtReport { rows, users, busy_before })
}

impl MgmtReport {
    pub(super) fn render(&self, ctx: &Ctx, opts: &Options, wrk: &str, elapsed: Duration) -> String {
        let mut s = report_header(ctx, opts, wrk, self.busy_before, elapsed);
        let base = self.rows.first().map_or(1.0, |r| r.result.rps());
        s.push_str(&render_rows(&self.rows, base));
        s.push_str(&render_verdicts(&self.rows));
        let rps = |phase: &str| self.rows.iter().find(|r| r.phase.starts_with(phase)).map(|r| r.result.rps());
        let _ = writeln!(s, "\nThe store held {} users.", self.users);
        for (what, service, floor) in [
            ("users-by-email", "users by email", "floor: pgbench, the SQL of users-by-email"),
            ("client_credentials", "machine-to-machine token", "floor: pgbench, the SQL of client_credentials"),
        ] {
            let row = self.rows.iter().find(|r| r.phase == service);
            if let Some(r) = row {
                let cpu_ms = r.result.server_cpu_s * 1000.0 / (r.result.requests.max(1) as f64);
                let _ = writeln!(s, "- {what}: Sesame's CPU {cpu_ms:.3} ms per request.");
            }
            if let (Some(a), Some(b)) = (rps(service), rps(floor)) {
                let _ =
                    writeln!(s, "- {what}: {a:.0} req/s = **{:.2}** of its SQL's floor ({b:.0} tps).", a / b.max(1e-9));
            }
        }
        s
    }
}
