//! Test support for the workspace: a real, throwaway PostgreSQL cluster (one per test process,
//! one database per test), the GUSTAV schema migrated into each database, and fixtures that
//! insert submissions and jobs the way GUSTAV's web app does.
//!
//! The cluster comes from `LEARNING_TEST_DATABASE_URL` (a superuser URL of a cluster you can
//! spare: the tests create `lrt_*` databases and give `gustav_worker` a known test password)
//! when set, else from
//! `scripts/throwaway-pg.sh`, which starts one from the distro's binaries. A reaper process
//! stops that cluster when the test process exits, however it exits. There is no silent skip:
//! when PostgreSQL cannot be started, the test fails with the script's message.

pub mod chaos_proxy;
pub mod fake_ollama;
pub mod fake_supabase;
pub mod fixtures;
pub mod gpu_sim;
pub mod images;
pub mod own_cluster;
pub mod pdf;
pub mod tools;

use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

/// The password the tests give the `gustav_worker` login role (throwaway clusters only).
pub const WORKER_PASSWORD: &str = "worker-test-password";

/// The migrations of the workspace, applied to every test database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

struct Cluster {
    admin_url: String,
    /// Keeps the reaper's stdin open; it stops the cluster when this process ends.
    _reaper: Option<Mutex<ChildStdin>>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The workspace root (`tests/..`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn start_cluster() -> Cluster {
    // Deliberately not DATABASE_URL: that is also the runner's DSN variable and often points
    // at a real database in a developer's shell.
    if let Ok(url) = std::env::var("LEARNING_TEST_DATABASE_URL") {
        if !url.trim().is_empty() {
            return Cluster {
                admin_url: url,
                _reaper: None,
            };
        }
    }
    let script = workspace_root().join("scripts/throwaway-pg.sh");
    let dir = std::env::temp_dir().join(format!(
        "learning-pg-{}-{}",
        std::process::id(),
        Uuid::new_v4().simple()
    ));
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg(&dir)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "TEST SETUP FAILED: could not start a throwaway PostgreSQL (see the message above); \
         install the `postgresql` package or set LEARNING_TEST_DATABASE_URL to a superuser URL of a spare cluster"
    );
    let admin_url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // Never waited for on purpose: the reaper must outlive this process to stop the cluster.
    #[allow(clippy::zombie_processes)]
    let mut reaper = Command::new("bash")
        .arg("-c")
        .arg(r#"cat >/dev/null; exec bash "$0" stop "$1" >/dev/null 2>&1"#)
        .arg(&script)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the cluster reaper");
    let stdin = reaper.stdin.take().expect("reaper stdin");
    Cluster {
        admin_url,
        _reaper: Some(Mutex::new(stdin)),
    }
}

fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(start_cluster)
}

/// One migrated database of the shared test cluster.
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// A superuser pool on this database (bypasses RLS: for fixtures and assertions).
    pub admin: PgPool,
    admin_options: PgConnectOptions,
    admin_url: String,
}

impl TestDb {
    /// Creates a fresh database, applies the migrations, and makes `gustav_worker` a login role.
    pub async fn new() -> TestDb {
        TestDb::on(&cluster().admin_url).await
    }

    /// Like [`TestDb::new`], on the cluster of superuser URL `admin_url` (e.g. an
    /// [`own_cluster::OwnCluster`] a test restarts).
    pub async fn on(admin_url: &str) -> TestDb {
        let base = PgConnectOptions::from_str(admin_url)
            .expect("LEARNING_TEST_DATABASE_URL is not a postgres URL");
        let server = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone())
            .await
            .expect("cannot connect to the test cluster");
        let name = format!("lrt_{}", Uuid::new_v4().simple());
        sqlx::query(&format!("create database {name}"))
            .execute(&server)
            .await
            .expect("create database");
        server.close().await;

        let admin_options = base.database(&name).disable_statement_logging();
        let admin = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(admin_options.clone())
            .await
            .expect("connect to the test database");
        MIGRATOR
            .run(&admin)
            .await
            .expect("migrations apply to an empty database");
        // Production gives the role LOGIN and a password out of band; the tests do the same.
        // Roles are cluster-wide, and concurrent ALTER ROLE can collide: retry once.
        let grant = format!("alter role gustav_worker login password '{WORKER_PASSWORD}'");
        if sqlx::query(&grant).execute(&admin).await.is_err() {
            sqlx::query(&grant)
                .execute(&admin)
                .await
                .expect("alter role gustav_worker");
        }
        TestDb {
            name,
            admin,
            admin_options,
            admin_url: admin_url.to_owned(),
        }
    }

    /// Connection options for this database as `gustav_worker`.
    pub fn worker_options(&self) -> PgConnectOptions {
        self.admin_options
            .clone()
            .username("gustav_worker")
            .password(WORKER_PASSWORD)
    }

    /// A URL for this database as `gustav_worker`, for runner processes.
    pub fn worker_url(&self) -> String {
        let o = &self.admin_options;
        format!(
            "postgres://gustav_worker:{WORKER_PASSWORD}@{}:{}/{}",
            o.get_host(),
            o.get_port(),
            self.name
        )
    }

    /// A URL for this database as the cluster superuser.
    pub fn admin_url(&self) -> String {
        let base = PgConnectOptions::from_str(&self.admin_url).expect("admin url");
        let password = url_password(&self.admin_url);
        format!(
            "postgres://{}{}@{}:{}/{}",
            base.get_username(),
            password.map(|p| format!(":{p}")).unwrap_or_default(),
            base.get_host(),
            base.get_port(),
            self.name
        )
    }

    /// A pool on this database as `gustav_worker` (RLS applies).
    pub async fn worker_pool(&self, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.worker_options())
            .await
            .expect("connect as gustav_worker")
    }
}

fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p.to_owned())
}
