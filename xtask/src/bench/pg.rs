//! `cargo xtask bench --store postgres`: the phases on the Postgres store, then the floor.
//!
//! - Every server gets a fresh database (`sesame_bench_<run>_<n>_<phase>`), created with `psql`,
//!   migrated with `sesame migrate`, dropped (`WITH (FORCE)`) when the server is.
//! - The floor: `pgbench` on the same Postgres server, at the wrk phases' concurrency (threads
//!   × connections), replaying the SQL one `POST /passwordless/start` runs on the request path,
//!   with a distinct identifier per transaction. Each variant runs on a fresh database that a
//!   `sesame serve` has seeded (clients, connections, signing key), as the service's phases do.
//! - "other CPU" leaves out the Postgres backends of the bench's databases, Postgres's writers
//!   (WAL writer, checkpointer, background writer) and the kernel's block-I/O workers: they work
//!   for the bench. They are not children of the bench, so a thread samples their CPU time
//!   while the load runs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};

use super::{CpuSnapshot, Ctx, Row, RowKind, WrkResult, check_start, cpu_secs, ms, proc_ticks};

/// The SQL of one start, as `crates/sesame-postgres` sends it on the request path
/// (`challenges::START`), with the values in place of the binds: `ChallengeStore::start`, one
/// statement writing one row (unless the user is blocked): the challenge with its sealed message,
/// enqueued already claimed by the replica that delivers it, and its `code_link_sent` event.
/// The client and the connection come from the replica's cache (`[database] cache_ms`), so a
/// start reads nothing else. A fresh identifier per start: the insert finds no row to update.
const START_ONE: &str = r"-- ChallengeStore::start: one row, the challenge with its message and its audit event.
WITH blocked AS (SELECT 1 FROM users WHERE connection = 'email'
  AND identifier = 'bench-' || :run || '-floor-c' || :client_id || '-' || :n || '@example.com' AND blocked),
put AS (
  INSERT INTO challenges (client_id, connection, identifier_kind, identifier, id, code_hash, link_hash, send,
    auth_params, language, created_at, expires_at, attempts, consumed_at,
    message_id, channel, recipient, sealed, message_created_at, message_expires_at, delivery, reason, sends,
    due_at, lease_until, last_error, finished_at,
    event_at, event_kind, event_client_id, event_connection, event_identifier, event_ip, event_detail)
  SELECT 'sesame-dev', 'email', 'email', 'bench-' || :run || '-floor-c' || :client_id || '-' || :n || '@example.com',
    'c' || :client_id || '-' || :n, '\x{HASH}'::bytea, '\x{HASH}'::bytea, 'code', '{}'::jsonb, NULL,
    now(), now() + interval '180 seconds', 0, NULL::timestamptz,
    'm' || :run || '-' || :client_id || '-' || :n, 'email',
    'bench-' || :run || '-floor-c' || :client_id || '-' || :n || '@example.com', '\x{SEALED}'::bytea,
    now(), now() + interval '180 seconds', 'pending', NULL::text, 1, now(), now() + interval '30 seconds',
    NULL::text, NULL::timestamptz,
    now(), 'code_link_sent', 'sesame-dev', 'email', 'b***@example.com', '127.0.0.1', 'code'
  WHERE NOT EXISTS (SELECT 1 FROM blocked)
  ON CONFLICT (client_id, connection, identifier) DO UPDATE SET
    identifier_kind = EXCLUDED.identifier_kind, id = EXCLUDED.id, code_hash = EXCLUDED.code_hash,
    link_hash = EXCLUDED.link_hash, send = EXCLUDED.send, auth_params = EXCLUDED.auth_params,
    language = EXCLUDED.language, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
    attempts = 0, consumed_at = NULL,
    message_id = EXCLUDED.message_id, channel = EXCLUDED.channel, recipient = EXCLUDED.recipient,
    sealed = EXCLUDED.sealed, message_created_at = EXCLUDED.message_created_at,
    message_expires_at = EXCLUDED.message_expires_at, delivery = 'pending', reason = NULL,
    sends = EXCLUDED.sends, due_at = EXCLUDED.due_at, lease_until = EXCLUDED.lease_until, last_error = NULL,
    finished_at = NULL, event_at = EXCLUDED.event_at, event_kind = EXCLUDED.event_kind,
    event_client_id = EXCLUDED.event_client_id, event_connection = EXCLUDED.event_connection,
    event_identifier = EXCLUDED.event_identifier, event_ip = EXCLUDED.event_ip, event_detail = EXCLUDED.event_detail,
    prior_events = CASE WHEN challenges.event_at IS NULL THEN challenges.prior_events
      ELSE COALESCE(challenges.prior_events, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
        'at', challenges.event_at, 'kind', challenges.event_kind, 'client_id', challenges.event_client_id,
        'connection', challenges.event_connection, 'identifier', challenges.event_identifier,
        'ip', challenges.event_ip, 'detail', challenges.event_detail)) END
  RETURNING 1)
SELECT EXISTS (SELECT 1 FROM put) AS stored, EXISTS (SELECT 1 FROM blocked) AS blocked;
";

/// The SQL of one start before issue 13's one row (kept to compare, as a second floor): the
/// challenge, an outbox row and an audit row, in one statement. It still runs on today's schema
/// (the outbox table stays for the previous release's messages).
const START_THREE: &str = r"-- ChallengeStore::start: the challenge replaces any earlier one of its key, the message is
-- enqueued and the issuance audited, in one statement.
WITH replaced AS (
  INSERT INTO challenges (client_id, connection, identifier_kind, identifier, id, code_hash, link_hash,
    send, auth_params, language, created_at, expires_at, attempts, consumed_at)
  SELECT 'sesame-dev', 'email', 'email', 'bench-' || :run || '-floor-c' || :client_id || '-' || :n || '@example.com',
    'c' || :client_id || '-' || :n, '\x{HASH}'::bytea, '\x{HASH}'::bytea, 'code', '{}'::jsonb, NULL,
    now(), now() + interval '180 seconds', 0, NULL::timestamptz
  WHERE NOT EXISTS (SELECT 1 FROM users WHERE connection = 'email'
    AND identifier = 'bench-' || :run || '-floor-c' || :client_id || '-' || :n || '@example.com' AND blocked)
  ON CONFLICT (client_id, connection, identifier) DO UPDATE SET
    identifier_kind = EXCLUDED.identifier_kind, id = EXCLUDED.id, code_hash = EXCLUDED.code_hash,
    link_hash = EXCLUDED.link_hash, send = EXCLUDED.send, auth_params = EXCLUDED.auth_params,
    language = EXCLUDED.language, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
    attempts = 0, consumed_at = NULL
  RETURNING 1),
queued AS (
  INSERT INTO outbox (id, channel, recipient, sealed, created_at, expires_at, due_at, attempts, lease_until)
  SELECT 'm' || :run || '-' || :client_id || '-' || :n, 'email',
    'bench-' || :run || '-floor-c' || :client_id || '-' || :n || '@example.com', '\x{SEALED}'::bytea,
    now(), now() + interval '180 seconds', now(), CASE WHEN (now() + interval '30 seconds') IS NULL THEN 0 ELSE 1 END,
    now() + interval '30 seconds' FROM replaced
  RETURNING 1)
INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail)
SELECT now(), 'code_link_sent', 'sesame-dev', 'email', 'b***@example.com', NULL, '127.0.0.1', 'code' FROM queued;
";

/// The SQL of one OTP exchange (`POST /oauth/token`) after its reads as it was before `LoginStore` (the
/// old floor, kept to compare): `ChallengeStore::check`
/// (check-and-consume, one statement), `UserStore::record_login` (the upsert),
/// `GrantStore::save_opaque` (the access token) and `AuditLog::record` (`login_succeeded`).
/// Client `c` consumes the challenges `tok-<c>-1`, `tok-<c>-2`, … that `TOKEN_PREFILL` made.
const TOKEN_WRITES: &str = r"-- ChallengeStore::check: counts the try and consumes on a match, in one statement.
UPDATE challenges SET
  attempts = attempts + CASE WHEN COALESCE((CASE WHEN false THEN link_hash ELSE code_hash END) = '\x{HASH}'::bytea, false)
    THEN 0 ELSE 1 END,
  consumed_at = CASE WHEN COALESCE((CASE WHEN false THEN link_hash ELSE code_hash END) = '\x{HASH}'::bytea, false) AND true
    THEN now() ELSE consumed_at END
WHERE client_id = 'sesame-dev' AND connection = 'email' AND identifier = 'tok-' || :client_id || '-' || :k || '@example.com'
  AND consumed_at IS NULL AND expires_at > now() AND attempts < 3
RETURNING client_id, connection, identifier_kind, identifier, id, code_hash, link_hash, send,
  auth_params, language, created_at, expires_at, attempts, consumed_at,
  COALESCE((CASE WHEN false THEN link_hash ELSE code_hash END) = '\x{HASH}'::bytea, false) AS matched;
-- UserStore::record_login: first logins race through ON CONFLICT.
INSERT INTO users (user_id, connection, identifier_kind, identifier, email_verified, phone_verified,
  created_at, updated_at, last_login, logins_count)
VALUES ('email|' || :run || '-' || :client_id || '-' || :k, 'email', 'email', 'tok-' || :client_id || '-' || :k || '@example.com',
  true, false, now(), now(), now(), 1)
ON CONFLICT (connection, identifier) DO UPDATE SET
  logins_count = users.logins_count + 1, last_login = EXCLUDED.last_login,
  updated_at = EXCLUDED.updated_at,
  email_verified = users.email_verified OR EXCLUDED.email_verified,
  phone_verified = users.phone_verified OR EXCLUDED.phone_verified
RETURNING user_id, connection, identifier_kind, identifier, email_verified, phone_verified,
  created_at, updated_at, last_login, logins_count;
-- GrantStore::save_opaque: the access token's hash.
INSERT INTO opaque_tokens (token_hash, client_id, user_id, scope, expires_at)
VALUES (decode(md5('a' || :run || '-' || :client_id || '-' || :k) || md5('b' || :run || '-' || :client_id || '-' || :k), 'hex'),
  'sesame-dev', 'email|' || :run || '-' || :client_id || '-' || :k, 'openid profile email', now() + interval '1 day');
-- AuditLog::record (login_succeeded).
INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail)
VALUES (now(), 'login_succeeded', 'sesame-dev', 'email', 't***@example.com', 'email|' || :run || '-' || :client_id || '-' || :k,
  '127.0.0.1', NULL);
";

/// The SQL of one OTP exchange after its reads, as it is now: `LoginStore::check_and_login`,
/// one statement (check-and-consume, user upsert, opaque token, `login_succeeded` audit row).
const TOKEN_ONE: &str = r"-- LoginStore::check_and_login: the check, the user, the token and the audit row in one statement.
WITH checked AS (
  UPDATE challenges SET
    attempts = attempts + CASE WHEN COALESCE((CASE WHEN false THEN link_hash ELSE code_hash END) = '\x{HASH}'::bytea, false)
      THEN 0 ELSE 1 END,
    consumed_at = CASE WHEN COALESCE((CASE WHEN false THEN link_hash ELSE code_hash END) = '\x{HASH}'::bytea, false)
      THEN now() ELSE consumed_at END
  WHERE client_id = 'sesame-dev' AND connection = 'email' AND identifier = 'tok-' || :client_id || '-' || :k || '@example.com'
    AND consumed_at IS NULL AND expires_at > now() AND attempts < 3
  RETURNING attempts, COALESCE((CASE WHEN false THEN link_hash ELSE code_hash END) = '\x{HASH}'::bytea, false) AS matched),
login AS (
  INSERT INTO users (user_id, connection, identifier_kind, identifier, email_verified, phone_verified,
    created_at, updated_at, last_login, logins_count)
  SELECT 'email|' || :run || '-' || :client_id || '-' || :k, 'email', 'email', 'tok-' || :client_id || '-' || :k || '@example.com',
    true, false, now(), now(), now(), 1 FROM checked WHERE matched
  ON CONFLICT (connection, identifier) DO UPDATE SET
    logins_count = users.logins_count + CASE WHEN users.blocked THEN 0 ELSE 1 END,
    last_login = CASE WHEN users.blocked THEN users.last_login ELSE EXCLUDED.last_login END,
    updated_at = CASE WHEN users.blocked THEN users.updated_at ELSE EXCLUDED.updated_at END,
    email_verified = users.email_verified OR (EXCLUDED.email_verified AND NOT users.blocked),
    phone_verified = users.phone_verified OR (EXCLUDED.phone_verified AND NOT users.blocked)
  RETURNING user_id, connection, identifier_kind, identifier, email_verified, phone_verified, created_at, updated_at,
    last_login, logins_count, blocked, name, nickname, picture, user_metadata, app_metadata),
token AS (
  INSERT INTO opaque_tokens (token_hash, client_id, user_id, scope, expires_at)
  SELECT decode(md5('a' || :run || '-' || :client_id || '-' || :k) || md5('b' || :run || '-' || :client_id || '-' || :k), 'hex'),
    'sesame-dev', login.user_id, 'openid profile email', now() + interval '1 day' FROM login WHERE NOT login.blocked
  RETURNING 1),
audited AS (
  INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail)
  SELECT now(), 'login_succeeded', 'sesame-dev', 'email', 't***@example.com', login.user_id, '127.0.0.1', NULL
  FROM login WHERE NOT login.blocked
  RETURNING 1)
SELECT user_id, true AS accepted, 0 AS attempts FROM login
UNION ALL
SELECT '', false, attempts FROM checked WHERE NOT matched;
";

/// Live challenges for the token floor: `{PER}` per pgbench client.
const TOKEN_PREFILL: &str = r"INSERT INTO challenges (client_id, connection, identifier_kind, identifier, id, code_hash,
  link_hash, send, auth_params, language, created_at, expires_at, attempts, consumed_at)
SELECT 'sesame-dev', 'email', 'email', 'tok-' || c || '-' || k || '@example.com', 'c' || c || '-' || k,
  '\x{HASH}'::bytea, '\x{HASH}'::bytea, 'code', '{}'::jsonb, NULL, now(), now() + interval '1 hour', 0, NULL
FROM generate_series(0, {CLIENTS} - 1) c, generate_series(1, {PER}) k";

/// What a floor variant replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replays {
    /// One start's statement (one row).
    Start,
    /// One start's statement before the one row (three rows): the old floor.
    StartThree,
    /// One OTP exchange's writes as four statements (before `LoginStore`): the old floor.
    TokenWrites,
    /// One OTP exchange's writes as the one statement the service sends now.
    TokenOne,
}

impl Replays {
    fn is_token(self) -> bool {
        matches!(self, Self::TokenWrites | Self::TokenOne)
    }
}

/// One pgbench run of the floor.
#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    /// For the table's phase column.
    short: &'static str,
    /// For the table's path column.
    what: &'static str,
    mode: &'static str,
    replays: Replays,
}

/// The first is the floor of the issue's target; the second says what preparing statements
/// saves; the last is the token exchange's floor.
const VARIANTS: &[Variant] = &[
    Variant {
        name: "start-prepared",
        short: "floor: start, one row, prepared",
        what: "pgbench: the start statement (one challenge row with its message and event), `-M prepared`",
        mode: "prepared",
        replays: Replays::Start,
    },
    Variant {
        name: "start-extended",
        short: "floor: start, one row, parsed each time",
        what: "pgbench: the start statement, `-M extended`",
        mode: "extended",
        replays: Replays::Start,
    },
    Variant {
        name: "start-three",
        short: "floor: start, three rows (before), prepared",
        what: "pgbench: the start statement before issue 13 (challenge + outbox row + audit row), `-M prepared`",
        mode: "prepared",
        replays: Replays::StartThree,
    },
    Variant {
        name: "token-one",
        short: "floor: token, one statement, prepared",
        what: "pgbench: the exchange's one statement (check-and-consume + user upsert + opaque token + audit), `-M prepared`",
        mode: "prepared",
        replays: Replays::TokenOne,
    },
    Variant {
        name: "token-prepared",
        short: "floor: token, four statements (before), prepared",
        what: "pgbench: check-and-consume UPDATE, user upsert, opaque token insert, audit insert (the exchange before LoginStore), `-M prepared`",
        mode: "prepared",
        replays: Replays::TokenWrites,
    },
];

/// The Postgres server the bench uses, and its tools.
#[derive(Debug)]
pub(super) struct Postgres {
    /// `postgres://user@host:port`, no database.
    base: String,
    pool_size: u32,
    /// Every database of this run starts with it: `sesame_bench_<run>`.
    prefix: String,
    server_secret: String,
    pgbench: PathBuf,
    pgbench_version: String,
    server_version: String,
    synchronous_commit: String,
    next: AtomicU32,
}

/// A database of this run; dropped (`WITH (FORCE)`) with this value.
#[derive(Debug)]
pub(super) struct Db {
    name: String,
    url: String,
    admin: String,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = psql(&self.admin, &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)) {
            eprintln!("xtask: warning: could not drop database {}: {e:#}", self.name);
        }
    }
}

/// What the 15 s peak left in its database.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeakState {
    challenges: u64,
    outbox: u64,
    pending: u64,
    code_link_sent: u64,
    sent: u64,
    /// Bytes of a sealed message (the rows of the floor carry as many).
    sealed_bytes: usize,
    sealed_measured: bool,
}

/// A sealed message when none was pending at the end of the peak (the size of the default
/// English code email to a bench address).
const SEALED_FALLBACK: usize = 396;

#[derive(Debug)]
struct FloorInfo {
    variant: Variant,
    tps: f64,
    /// pgbench -r: average latency (ms) per statement.
    statements: Vec<(f64, String)>,
}

/// One round of the alternation: the start peak, then the floor right after it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Round {
    service: WrkResult,
    floor: WrkResult,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.service.rps() / self.floor.rps().max(f64::MIN_POSITIVE)
    }
}

/// The Postgres part of the report.
#[derive(Debug)]
pub(super) struct PgReport {
    state: PeakState,
    floors: Vec<FloorInfo>,
    /// The alternated rounds (`--rounds`): the target's ratio is their median.
    pub(super) rounds: Vec<Round>,
    clients: u32,
    threads: u32,
    pgbench_version: String,
}

fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .context("running psql (Debian: apt-get install postgresql-client)")?;
    ensure!(
        out.status.success(),
        "psql {sql:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `pgbench` on PATH, else the server's own (`/usr/lib/postgresql/<version>/bin`, the newest).
fn find_pgbench() -> anyhow::Result<(PathBuf, String)> {
    let version = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(v) = version(Path::new("pgbench")) {
        return Ok((PathBuf::from("pgbench"), v));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let path = e.path().join("bin").join("pgbench");
            path.is_file().then_some((major, path))
        })
        .collect();
    found.sort();
    if let Some((_, path)) = found.pop()
        && let Some(v) = version(&path)
    {
        return Ok((path, v));
    }
    bail!(
        "--store postgres needs `pgbench` for the floor; install it (Debian: `apt-get install postgresql-contrib`, \
         or the server package's /usr/lib/postgresql/<version>/bin/pgbench) and run again"
    )
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).context("reading /dev/urandom")?;
    Ok(buf.iter().fold(String::with_capacity(bytes * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

impl Postgres {
    /// Checks the tools and the server before anything is built.
    pub(super) fn find(url: &str, pool_size: u32, run_id: u64) -> anyhow::Result<Self> {
        // postgres://user@host:port[/db][?…] → postgres://user@host:port
        let trimmed = url.split('?').next().unwrap_or(url).trim_end_matches('/');
        let base = match trimmed.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
            None => bail!("--pg-url {url:?} is not a postgres:// URL"),
        };
        let (pgbench, pgbench_version) = find_pgbench()?;
        let admin = format!("{base}/postgres");
        let settings = psql(
            &admin,
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'), \
             current_setting('max_connections')",
        )
        .with_context(|| format!("Postgres does not answer at {base} (see --pg-url)"))?;
        let fields: Vec<&str> = settings.split('|').collect();
        let (server_version, synchronous_commit, max_connections) = match fields.as_slice() {
            [v, s, m] => ((*v).to_owned(), (*s).to_owned(), m.parse::<u32>().unwrap_or(0)),
            _ => bail!("unexpected answer from Postgres: {settings:?}"),
        };
        if max_connections < pool_size + 16 {
            eprintln!(
                "xtask: warning: Postgres allows {max_connections} connections; the pool ({pool_size}) and other \
                 clients may not fit"
            );
        }
        Ok(Self {
            base,
            pool_size,
            prefix: format!("sesame_bench_{run_id}"),
            server_secret: random_hex(32)?,
            pgbench,
            pgbench_version,
            server_version,
            synchronous_commit,
            next: AtomicU32::new(0),
        })
    }

    /// For the report's settings.
    pub(super) fn describe(&self) -> String {
        format!(
            "store = \"postgres\" (PostgreSQL {}, synchronous_commit = {}, pool_size {}, a fresh database per phase), \
             memory limiter",
            self.server_version, self.synchronous_commit, self.pool_size
        )
    }

    /// A new, empty database of this run.
    pub(super) fn create_db(&self, phase: &str) -> anyhow::Result<Db> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let phase: String =
            phase.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        let mut name = format!("{}_{n}_{phase}", self.prefix);
        name.truncate(63);
        let admin = format!("{}/postgres", self.base);
        psql(&admin, &format!("CREATE DATABASE \"{name}\""))?;
        Ok(Db { url: format!("{}/{name}", self.base), name, admin })
    }

    /// Top-level settings (they go before `--config`, which may open a table).
    pub(super) fn top_level_settings(&self) -> String {
        format!("store = \"postgres\"\nserver_secret = \"{}\"\n", self.server_secret)
    }

    /// `[database]` and the client the load uses (the embedded default's `sesame-dev` exists only
    /// in the memory store).
    pub(super) fn tables(&self, db: &Db) -> String {
        format!(
            "\n[database]\nurl = \"{}\"\npool_size = {}\n\n[[clients]]\nclient_id = \"sesame-dev\"\n\
             name = \"Sesame bench client\"\ncallbacks = [\"http://localhost:3000/callback\"]\n\
             allowed_origins = [\"http://localhost:3000\"]\n",
            db.url, self.pool_size
        )
    }

    pub(super) fn watch_cpu(&self) -> CpuWatch {
        CpuWatch::start(self.prefix.clone())
    }

    /// `CHECKPOINT`: a measured phase starts with nothing left to flush and every page's next
    /// change paying its full-page write, whichever phase ran before it.
    pub(super) fn checkpoint(&self) -> anyhow::Result<()> {
        psql(&format!("{}/postgres", self.base), "CHECKPOINT").map(drop)
    }

    /// Runs `sql` in `db` and returns psql's unaligned output.
    pub(super) fn sql(&self, db: &Db, sql: &str) -> anyhow::Result<String> {
        psql(&db.url, sql)
    }

    /// Messages waiting in the outbox.
    pub(super) fn pending(&self, db: &Db) -> anyhow::Result<u64> {
        let out = psql(
            &db.url,
            "SELECT (SELECT count(*) FROM challenges WHERE delivery = 'pending') \
               + (SELECT count(*) FROM outbox WHERE status = 'pending')",
        )?;
        out.trim().parse().with_context(|| format!("pending count {out:?}"))
    }

    /// Reads what the peak left: rows per table and the size of a sealed message.
    pub(super) fn peak_state(&self, db: &Db) -> anyhow::Result<PeakState> {
        let out = psql(
            &db.url,
            "SELECT (SELECT count(*) FROM challenges), (SELECT count(*) FROM challenges WHERE delivery IS NOT NULL), \
             (SELECT count(*) FROM challenges WHERE delivery = 'pending'), \
             (SELECT count(*) FROM challenges WHERE event_kind = 'code_link_sent') \
               + (SELECT count(*) FROM audit_events WHERE kind = 'code_link_sent'), \
             (SELECT count(*) FROM challenges WHERE delivery = 'sent'), \
             (SELECT coalesce(max(length(sealed)), 0) FROM challenges WHERE delivery = 'pending')",
        )?;
        let n: Vec<u64> = out.split('|').map(|f| f.trim().parse().unwrap_or(0)).collect();
        let get = |i: usize| n.get(i).copied().unwrap_or(0);
        let sealed = usize::try_from(get(5)).unwrap_or(0);
        Ok(PeakState {
            challenges: get(0),
            outbox: get(1),
            pending: get(2),
            code_link_sent: get(3),
            sent: get(4),
            sealed_bytes: if sealed > 0 { sealed } else { SEALED_FALLBACK },
            sealed_measured: sealed > 0,
        })
    }

    /// Runs one pgbench and reads its result and per-transaction log.
    pub(super) fn pgbench(
        &self,
        db: &Db,
        script: &Path,
        mode: &str,
        ctx: &Ctx,
        log_prefix: &Path,
        length: Duration,
    ) -> anyhow::Result<(WrkResult, Vec<(f64, String)>)> {
        let plan = &ctx.plan;
        let mut cmd = Command::new(&self.pgbench);
        cmd.args(["-n", "-r", "-l", "-M", mode])
            .arg(format!("--log-prefix={}", log_prefix.display()))
            .arg(format!("-c{}", plan.connections))
            .arg(format!("-j{}", plan.threads))
            .arg(format!("-T{}", length.as_secs()))
            .arg("-D")
            .arg(format!("run={}", ctx.run_id))
            .arg("-D")
            .arg("k=0")
            .arg("-f")
            .arg(script)
            .arg(&db.url);
        let watch = self.watch_cpu();
        let before = CpuSnapshot::take(&[]);
        let out = cmd.output().context("running pgbench")?;
        let after = CpuSnapshot::take(&[]);
        let pg_ticks = watch.finish();
        eprintln!(
            "xtask: Postgres (the bench's backends, the writers) and block I/O used {} during the run",
            cpu_secs(pg_ticks)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines() {
            eprintln!("  | {line}");
        }
        ensure!(out.status.success(), "pgbench failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        let field = |prefix: &str| {
            stdout.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|rest| rest.split_whitespace().next())
        };
        let processed: u64 = field("number of transactions actually processed: ")
            .context("pgbench printed no transaction count")?
            .parse()?;
        let failed: u64 = field("number of failed transactions: ").map_or(Ok(0), str::parse)?;
        let tps: f64 = field("tps = ").context("pgbench printed no tps")?.parse()?;
        // Statement latencies (-r): "   3.634   0  WITH replaced AS ( …".
        let statements = stdout
            .lines()
            .skip_while(|l| !l.contains("statement latencies"))
            .skip(1)
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let ms: f64 = parts.next()?.parse().ok()?;
                let mut rest: Vec<&str> = parts.collect();
                // pg15 prints the failures column before the statement.
                if rest.first().is_some_and(|w| w.parse::<u64>().is_ok()) {
                    rest.remove(0);
                }
                let text = rest.join(" ");
                (!text.starts_with('\\')).then_some((ms, text))
            })
            .collect();
        let mut latencies = transaction_latencies(log_prefix)?;
        ensure!(!latencies.is_empty(), "pgbench wrote no transaction log at {}*", log_prefix.display());
        latencies.sort_unstable();
        let pick = |q: f64| {
            let i = ((latencies.len() as f64 * q) as usize).min(latencies.len() - 1);
            latencies[i]
        };
        let result = WrkResult {
            requests: processed,
            duration_us: (processed as f64 / tps.max(f64::MIN_POSITIVE) * 1e6) as u64,
            non_2xx: failed,
            socket_errors: 0,
            p50_us: pick(0.50),
            p99_us: pick(0.99),
            exhausted: 0,
            other_cpu: before.zip(after).and_then(|(b, a)| a.others_since(&b, pg_ticks)),
            server_cpu_s: 0.0,
            helper_cpu_s: 0.0,
            db_cpu_s: pg_ticks as f64 / 100.0,
            rss_before_kb: 0,
            rss_peak_kb: 0,
        };
        Ok((result, statements))
    }
}

/// The latency (µs, third field) of every transaction in pgbench's logs `<prefix>.<pid>[.<thread>]`.
fn transaction_latencies(prefix: &Path) -> anyhow::Result<Vec<u64>> {
    let dir = prefix.parent().context("log prefix without a directory")?;
    let stem = prefix.file_name().and_then(|s| s.to_str()).context("log prefix without a name")?;
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&format!("{stem}.")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())?;
        all.extend(text.lines().filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()));
    }
    Ok(all)
}

/// The pgbench script of a variant.
fn script(variant: Variant, hash: &str, sealed: &str) -> String {
    if variant.replays.is_token() {
        let sql = if variant.replays == Replays::TokenOne { TOKEN_ONE } else { TOKEN_WRITES };
        return format!(
            "-- Written by `cargo xtask bench --store postgres`: the SQL of one POST /oauth/token (OTP)\n\
             -- ({}). Client c consumes tok-c-1, tok-c-2, … in turn (k is per client).\n\\set k :k + 1\n{}",
            variant.what,
            sql.replace("{HASH}", hash)
        );
    }
    let mut s = format!(
        "-- Written by `cargo xtask bench --store postgres`: the SQL of one POST /passwordless/start\n\
         -- ({}). A distinct identifier per transaction.\n\\set n random(1, 1000000000000)\n",
        variant.what
    );
    let sql = if variant.replays == Replays::StartThree { START_THREE } else { START_ONE };
    s.push_str(&sql.replace("{HASH}", hash).replace("{SEALED}", sealed));
    s
}

impl Ctx {
    /// Phase 5: each floor variant on a fresh database that a server has seeded.
    pub(super) fn floor(&self, pg: &Postgres, state: PeakState, rows: &mut Vec<Row>) -> anyhow::Result<PgReport> {
        let hash = random_hex(32)?;
        let sealed = random_hex(state.sealed_bytes)?;
        let mut floors = Vec::new();
        for variant in VARIANTS {
            let (result, statements) = self.floor_run(pg, *variant, &hash, &sealed, self.plan.floor, variant.name)?;
            rows.push(Row {
                phase: variant.short.into(),
                path: variant.what.into(),
                load: format!("pgbench {}", self.plan.shape()),
                kind: RowKind::Floor,
                result,
            });
            floors.push(FloorInfo { variant: *variant, tps: result.rps(), statements });
        }
        Ok(PgReport {
            state,
            floors,
            rounds: Vec::new(),
            clients: self.plan.connections,
            threads: self.plan.threads,
            pgbench_version: pg.pgbench_version.clone(),
        })
    }

    /// One pgbench run of `variant` for `length`, on a fresh database a server has seeded,
    /// right after a checkpoint.
    fn floor_run(
        &self,
        pg: &Postgres,
        variant: Variant,
        hash: &str,
        sealed: &str,
        length: Duration,
        tag: &str,
    ) -> anyhow::Result<(WrkResult, Vec<(f64, String)>)> {
        let (db, path) = self.floor_db(variant, hash, sealed, length, tag)?;
        eprintln!(
            "xtask: floor {tag}: pgbench -M {} -c{} -j{} for {}s",
            variant.mode,
            self.plan.connections,
            self.plan.threads,
            length.as_secs()
        );
        let log_prefix = self.work.join(format!("pgbench-{tag}"));
        pg.checkpoint()?;
        pg.pgbench(&db, &path, variant.mode, self, &log_prefix, length)
    }

    /// A fresh database a server has seeded (clients, connections, key), with what `variant`
    /// needs, and the pgbench script for it.
    fn floor_db(
        &self,
        variant: Variant,
        hash: &str,
        sealed: &str,
        length: Duration,
        tag: &str,
    ) -> anyhow::Result<(Db, PathBuf)> {
        let mut server = self.server(&format!("floor-{tag}"))?;
        let db = server.db.take().context("the floor's server has no database")?;
        drop(server);
        if variant.replays.is_token() {
            // Enough live challenges that no client runs out at 20 000 exchanges/s.
            let per = 20_000 * length.as_secs() / u64::from(self.plan.connections.max(1)) + 100;
            let sql = TOKEN_PREFILL
                .replace("{HASH}", hash)
                .replace("{CLIENTS}", &self.plan.connections.to_string())
                .replace("{PER}", &per.to_string());
            eprintln!("xtask: floor {tag}: {} live challenges first", per * u64::from(self.plan.connections));
            psql(&db.url, &sql)?;
            psql(&db.url, "ANALYZE challenges")?;
        }
        let path = self.work.join(format!("floor-{tag}.sql"));
        std::fs::write(&path, script(variant, hash, sealed)).with_context(|| format!("writing {}", path.display()))?;
        Ok((db, path))
    }

    /// The target's ratio, measured so that both sides see the same machine: one server and
    /// one floor database, then `--rounds` slices of `round` each, alternating the start peak
    /// (wrk) and the floor (pgbench, start, prepared). The machine's speed drifts from one few
    /// seconds to the next here; slices that alternate share the drift.
    pub(super) fn alternate(&self, pg: &Postgres, state: PeakState) -> anyhow::Result<Vec<Round>> {
        let hash = random_hex(32)?;
        let sealed = random_hex(state.sealed_bytes)?;
        let (db, script) = self.floor_db(VARIANTS[0], &hash, &sealed, self.plan.round, "rounds")?;
        let server = self.server("rounds")?;
        check_start(&server, &format!("bench-{}-rounds-check@example.com", self.run_id))?;
        pg.checkpoint()?;
        eprintln!(
            "xtask: {} alternating slices of {}s: POST /passwordless/start at full load, then the floor",
            self.plan.rounds,
            self.plan.round.as_secs()
        );
        let mut rounds = Vec::new();
        for r in 0..self.plan.rounds {
            let service = self.wrk(
                "start.lua",
                &server,
                self.plan.connections,
                self.plan.round,
                &[("BENCH_PREFIX", format!("round{r}"))],
            )?;
            let log_prefix = self.work.join(format!("pgbench-round{r}"));
            let (floor, _) = pg.pgbench(&db, &script, VARIANTS[0].mode, self, &log_prefix, self.plan.round)?;
            rounds.push(Round { service, floor });
        }
        Ok(rounds)
    }
}

/// The issues' targets: a start at ≥ 80 % of its floor (issue 13; 70 % in issue 3), p99 at half
/// the peak under 25 ms.
const TARGET_RATIO: f64 = 0.80;
const TARGET_P99_MS: f64 = 25.0;

impl PgReport {
    pub(super) fn render(&self, rows: &[Row]) -> String {
        let mut s = String::new();
        let start_rows = || rows.iter().filter(|r| r.path == "POST /passwordless/start");
        let peak = start_rows()
            .find(|r| r.kind == RowKind::Total)
            .or_else(|| start_rows().find(|r| r.kind == RowKind::Peak))
            .map(|r| (r.phase.clone(), r.result));
        let half = start_rows().find(|r| r.kind == RowKind::Paced).map(|r| r.result);
        let per_thread = self.clients / self.threads.max(1);
        let _ = writeln!(
            s,
            "\nService against the floor ({}, {}×{per_thread} clients):\n",
            self.pgbench_version, self.threads
        );
        let _ = writeln!(s, "| service | req/s | floor | tps | service ÷ floor |");
        let _ = writeln!(s, "|---|---:|---|---:|---:|");
        let token = rows.iter().find(|r| r.path == "POST /oauth/token").map(|r| (r.phase.clone(), r.result));
        for floor in &self.floors {
            let service = if floor.variant.replays.is_token() { &token } else { &peak };
            let Some((phase, service)) = service else { continue };
            let ratio = service.rps() / floor.tps.max(f64::MIN_POSITIVE);
            let _ = writeln!(
                s,
                "| {phase} | {:.0} | {} | {:.0} | {:.0} % |",
                service.rps(),
                floor.variant.short.trim_start_matches("floor: "),
                floor.tps,
                ratio * 100.0
            );
        }
        // What the database itself gained, in the same run: each new statement's floor against
        // the statements it replaced.
        let tps = |name: &str| self.floors.iter().find(|f| f.variant.name == name).map(|f| f.tps);
        for (new, old, what) in [
            ("start-prepared", "start-three", "start, one row ÷ three rows"),
            ("token-one", "token-prepared", "token, one statement ÷ four"),
        ] {
            if let (Some(a), Some(b)) = (tps(new), tps(old)) {
                let _ = writeln!(
                    s,
                    "\nFloor {what}: **{:.2}×** ({a:.0} ÷ {b:.0} tps, same run).",
                    a / b.max(f64::MIN_POSITIVE)
                );
            }
        }
        if !self.rounds.is_empty() {
            let _ = writeln!(
                s,
                "\nThe target's ratio, from slices that alternate the two on one server and one floor database: \
                 `POST /passwordless/start` at full load, then the floor \"start, prepared\":\n"
            );
            let _ = writeln!(s, "| slice | start req/s | start p99 | floor tps | floor p99 | start ÷ floor |");
            let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
            for (i, r) in self.rounds.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {} | {:.0} | {} | {:.0} % |",
                    i + 1,
                    r.service.rps(),
                    ms(r.service.p99_us),
                    r.floor.rps(),
                    ms(r.floor.p99_us),
                    r.ratio() * 100.0
                );
            }
            let total = |pick: fn(&Round) -> &WrkResult| {
                let (n, us) =
                    self.rounds.iter().map(pick).fold((0u64, 0u64), |(n, us), r| (n + r.requests, us + r.duration_us));
                n as f64 / (us.max(1) as f64 / 1e6)
            };
            let (service, floor) = (total(|r| &r.service), total(|r| &r.floor));
            let overall = service / floor.max(f64::MIN_POSITIVE);
            let mut ratios: Vec<f64> = self.rounds.iter().map(Round::ratio).collect();
            ratios.sort_by(f64::total_cmp);
            let _ = writeln!(
                s,
                "\nOver all {} slices: start {service:.0} req/s, floor {floor:.0} tps: start ÷ floor **{:.0} %** \
                 (target ≥ {:.0} %: **{}**). Per slice: median {:.0} %, from {:.0} % to {:.0} %.",
                ratios.len(),
                overall * 100.0,
                TARGET_RATIO * 100.0,
                if overall >= TARGET_RATIO { "met" } else { "missed" },
                ratios[ratios.len() / 2] * 100.0,
                ratios[0] * 100.0,
                ratios[ratios.len() - 1] * 100.0
            );
        }
        if let Some(half) = half {
            let p99 = half.p99_us as f64 / 1000.0;
            let _ = writeln!(
                s,
                "\nAt half the peak rate ({:.0} req/s reached): p50 {}, p99 {} (target p99 < {TARGET_P99_MS:.0} ms: **{}**).",
                half.rps(),
                ms(half.p50_us),
                ms(half.p99_us),
                if p99 < TARGET_P99_MS { "met" } else { "missed" }
            );
        }
        let _ = writeln!(s, "\nAverage latency per statement in the floor (pgbench -r):");
        for floor in &self.floors {
            let parts: Vec<String> = floor
                .statements
                .iter()
                .map(|(ms, sql)| {
                    let words: Vec<&str> = sql.split_whitespace().take(4).collect();
                    format!("{ms:.2} ms `{}…`", words.join(" "))
                })
                .collect();
            let _ = writeln!(s, "- {}: {}", floor.variant.name, parts.join(", "));
        }
        let st = &self.state;
        let _ = writeln!(
            s,
            "\nThe peak's database at its end: {} challenge rows, {} with a message ({} still pending), \
             {} `code_link_sent` events (on their rows, or moved to audit_events by a later start of the key); \
             {} messages sent (delivery: state `sent`, sealed body wiped). A sealed message is {} bytes{}; \
             the floor's rows carry as many.",
            st.challenges,
            st.outbox,
            st.pending,
            st.code_link_sent,
            st.sent,
            st.sealed_bytes,
            if st.sealed_measured { " (measured on a pending row)" } else { " (none was pending: the usual size)" }
        );
        s
    }
}

/// Samples, every 100 ms while a load runs, the CPU time of the Postgres processes that work
/// for the bench: the backends of its databases (by their process title) and the writers, and
/// of the kernel's block-I/O workers (`kworker/…H-kblockd`, `jbd2/…`), which do their fsyncs.
/// Backends that started meanwhile count from zero; the last sample of one that ended counts.
#[derive(Debug)]
pub(super) struct CpuWatch {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

/// Postgres processes that write for every database.
const WRITERS: &[&str] = &["walwriter", "checkpointer", "background writer"];

impl CpuWatch {
    fn start(prefix: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut seen: HashMap<u32, (u64, u64)> = HashMap::new();
            let mut first = true;
            loop {
                sample(&prefix, &mut seen, first);
                first = false;
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen.values().map(|(from, to)| to.saturating_sub(*from)).sum()
        });
        Self { stop, handle }
    }

    /// Stops sampling; the clock ticks the watched processes used meanwhile.
    pub(super) fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

fn sample(prefix: &str, seen: &mut HashMap<u32, (u64, u64)>, first: bool) {
    let Ok(dir) = std::fs::read_dir("/proc") else { return };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let stat_path = format!("/proc/{pid}/stat");
        let Ok(stat) = std::fs::read_to_string(&stat_path) else { continue };
        let comm = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')')).map_or("", |(c, _)| c);
        let ours = if comm == "postgres" {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains(prefix) || WRITERS.iter().any(|w| cmdline.contains(w))
        } else {
            // The kernel's block-I/O workers: the commits' fsyncs.
            (comm.starts_with("kworker/") && comm.contains("H-kb")) || comm.starts_with("jbd2/")
        };
        if !ours {
            continue;
        }
        let Some(ticks) = proc_ticks(&stat_path, false) else { continue };
        seen.entry(pid).or_insert((if first { ticks } else { 0 }, ticks)).1 = ticks;
    }
}
