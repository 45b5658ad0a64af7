//! `TestDatabase`: a uniquely named, migrated database for one test, dropped afterwards.
//! Point at another server with `TEST_DATABASE_URL` (an admin URL, e.g. `postgres://postgres@127.0.0.1:5432/postgres`).

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use crate::{PgConfig, PgStore};

/// One test's database.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    admin_url: String,
    config: PgConfig,
}

/// The server the tests use.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if url[..i].contains("://") && url[i..].len() > 1 || url.ends_with('/') => {
            let base = &url[..i];
            let query = url[i..].find('?').map(|q| &url[i + q..]).unwrap_or("");
            format!("{base}/{db}{query}")
        }
        _ => format!("{url}/{db}"),
    }
}

impl TestDatabase {
    /// Creates and migrates a new database.
    ///
    /// # Errors
    /// When Postgres is not reachable: the message says so, so a missing service fails loudly.
    pub async fn new() -> anyhow::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name =
            format!("sesame_test_{}_{}_{:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos);
        let admin_url = admin_url();
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .with_context(|| format!("PostgreSQL is not reachable at {admin_url} (set TEST_DATABASE_URL)"))?;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.context("creating the test database")?;
        let config = PgConfig::new(with_database(&admin_url, &name));
        let db = Self { name, admin_url, config };
        db.store()?.migrate().await?;
        Ok(db)
    }

    pub fn config(&self) -> PgConfig {
        self.config.clone()
    }

    /// A new store (its own pool) on this database: two calls are like two replicas.
    ///
    /// # Errors
    /// When the pool cannot be built.
    pub fn store(&self) -> anyhow::Result<PgStore> {
        PgStore::connect(&self.config)
    }
}

impl PgStore {
    /// The generic plans (`plan_cache_mode = force_generic_plan`: what a connection keeps once
    /// it stops planning per call) of the outbox's per-message statements, made now, by name.
    ///
    /// # Errors
    /// When Postgres cannot be reached or a statement does not prepare.
    pub async fn outbox_generic_plans(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        #[derive(diesel::QueryableByName)]
        struct Line {
            #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
            line: String,
        }
        let statements = [
            (
                "settle",
                crate::challenges::SETTLE,
                "text[], text[], text[], timestamptz[], text[], timestamptz",
                "'{a}', '{failed}', '{NULL}', '{NULL}', '{NULL}', now()",
            ),
            ("claim", crate::challenges::CLAIM_ONE, "text, timestamptz, timestamptz", "'a', now(), now()"),
        ];
        let mut conn = self.conn().await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
        conn.batch_execute("SET plan_cache_mode = force_generic_plan").await?;
        let mut plans = Vec::new();
        for (name, sql, types, args) in statements {
            conn.batch_execute(&format!("PREPARE plan_{name} ({types}) AS {sql}")).await?;
            let lines: Vec<Line> = diesel_async::RunQueryDsl::load(
                diesel::sql_query(format!("EXPLAIN EXECUTE plan_{name}({args})")),
                &mut conn,
            )
            .await?;
            conn.batch_execute(&format!("DEALLOCATE plan_{name}")).await?;
            plans.push((name, lines.into_iter().map(|l| l.line).collect::<Vec<_>>().join("\n")));
        }
        conn.batch_execute("RESET plan_cache_mode").await?;
        Ok(plans)
    }

    /// What one pooled connection holds prepared (`pg_prepared_statements`): with a pool of
    /// one, what the statements run so far have left there.
    ///
    /// # Errors
    /// When Postgres cannot be reached.
    pub async fn prepared_statements(&self) -> anyhow::Result<Vec<String>> {
        #[derive(diesel::QueryableByName)]
        struct Prepared {
            #[diesel(sql_type = diesel::sql_types::Text)]
            statement: String,
        }
        let mut conn = self.conn().await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let rows: Vec<Prepared> = diesel_async::RunQueryDsl::load(
            diesel::sql_query("SELECT statement FROM pg_prepared_statements ORDER BY prepare_time"),
            &mut conn,
        )
        .await?;
        Ok(rows.into_iter().map(|r| r.statement).collect())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async: do the async work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut admin = AsyncPgConnection::establish(&url).await.ok()?;
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            tracing::warn!(database = self.name, "test database was not dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_replace_the_path() {
        assert_eq!(super::with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            super::with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
    }
}

/// A second PostgreSQL, made for one test with the machine's `initdb`, that takes TLS only
/// (`hostssl … trust`, `hostnossl … reject`), with a certificate for the name `localhost` (not
/// for `127.0.0.1`) from a CA made here with `openssl`. `ca.crt` signed it; `other.crt` is a CA
/// that signed nothing. Stopped and removed when dropped.
#[derive(Debug)]
pub struct TlsPostgres {
    pub port: u16,
    pub dir: std::path::PathBuf,
    bindir: std::path::PathBuf,
}

impl TlsPostgres {
    /// Runs `initdb` (as the `postgres` user when this process is root, which Postgres refuses
    /// to run as) and starts the server on a free port.
    ///
    /// # Errors
    /// When `initdb`/`pg_ctl` (set `TEST_PG_BINDIR`, else `/usr/lib/postgresql/*/bin`) or
    /// `openssl` is missing or fails: the message names it.
    pub fn start() -> anyhow::Result<Self> {
        let bindir = match std::env::var_os("TEST_PG_BINDIR") {
            Some(dir) => std::path::PathBuf::from(dir),
            None => std::fs::read_dir("/usr/lib/postgresql")
                .context("no /usr/lib/postgresql (set TEST_PG_BINDIR to the folder of initdb and pg_ctl)")?
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|bin| bin.join("initdb").exists())
                .max()
                .context("no initdb under /usr/lib/postgresql/*/bin (set TEST_PG_BINDIR)")?,
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("sesame-pg-tls-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let server = Self { port, dir: dir.clone(), bindir };
        let openssl = |args: &[&str]| run(&dir, "openssl", args, false);
        let ca = |key: &str, crt: &str, cn: &str| {
            let subj = format!("/CN={cn}");
            openssl(&[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt, "-days", "1", "-subj",
                &subj,
            ])
        };
        ca("ca.key", "ca.crt", "sesame test CA")?;
        ca("other.key", "other.crt", "another CA")?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ])?;
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n")?;
        openssl(&[
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
        ])?;
        let as_root = run(&dir, "id", &["-u"], false).map(|out| out.trim() == "0")?;
        if as_root {
            run(&dir, "chown", &["-R", "postgres:postgres", &dir.display().to_string()], false)?;
        }
        run(&dir, "chmod", &["0600", "server.key"], false)?;
        let data = dir.join("data").display().to_string();
        let initdb = server.bindir.join("initdb").display().to_string();
        run(&dir, &initdb, &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"], as_root)?;
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\nssl = on\n\
             ssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\nfsync = off\n",
            dir = dir.display()
        );
        append(&dir.join("data/postgresql.conf"), &conf)?;
        std::fs::write(
            dir.join("data/pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )?;
        let pg_ctl = server.bindir.join("pg_ctl").display().to_string();
        let log = dir.join("server.log").display().to_string();
        run(&dir, &pg_ctl, &["-D", &data, "-l", &log, "-w", "-t", "30", "start"], as_root)?;
        Ok(server)
    }

    /// The URL of the `postgres` database on this server by `host`, with `params` as its query.
    pub fn url(&self, host: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{params}", self.port)
    }

    /// A file of the server's folder (`ca.crt`, `other.crt`).
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let as_root = run(&self.dir, "id", &["-u"], false).is_ok_and(|out| out.trim() == "0");
        let pg_ctl = self.bindir.join("pg_ctl").display().to_string();
        let data = self.dir.join("data").display().to_string();
        let _ = run(&self.dir, &pg_ctl, &["-D", &data, "-m", "immediate", "stop"], as_root);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn append(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs a program in `dir` (as the `postgres` user with `as_postgres`), returning its output.
fn run(dir: &std::path::Path, program: &str, args: &[&str], as_postgres: bool) -> anyhow::Result<String> {
    let mut command = if as_postgres {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        std::process::Command::new(program)
    };
    let out = command
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {program} (the TLS Postgres test needs it)"))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
