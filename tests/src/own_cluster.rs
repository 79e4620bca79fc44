//! A PostgreSQL cluster of one test's own, for faults that hit the whole server — a restart,
//! a server that is down for a while — without disturbing the tests that share the process's
//! cluster. Started from the distro's binaries by `scripts/throwaway-pg.sh` (like the shared
//! one), removed when dropped, and by a reaper process if the test process dies first.

use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

use crate::workspace_root;

/// A running throwaway cluster; stopped and removed on drop.
pub struct OwnCluster {
    dir: PathBuf,
    admin_url: String,
    _reaper: ChildStdin,
}

fn script(command: &str, dir: &PathBuf) -> std::process::Output {
    let script = workspace_root().join("scripts/throwaway-pg.sh");
    Command::new("bash")
        .arg(&script)
        .arg(command)
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}

impl OwnCluster {
    /// Starts a new cluster; panics with the script's message when it cannot.
    pub fn start() -> OwnCluster {
        let dir = std::env::temp_dir().join(format!("learning-own-pg-{}", Uuid::new_v4().simple()));
        let out = script("start", &dir);
        assert!(
            out.status.success(),
            "TEST SETUP FAILED: could not start a throwaway PostgreSQL of the test's own (see above)"
        );
        let admin_url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // Never waited for on purpose: the reaper outlives a test process that dies.
        #[allow(clippy::zombie_processes)]
        let mut reaper = Command::new("bash")
            .arg("-c")
            .arg(r#"cat >/dev/null; exec bash "$0" stop "$1" >/dev/null 2>&1"#)
            .arg(workspace_root().join("scripts/throwaway-pg.sh"))
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the cluster reaper");
        let stdin = reaper.stdin.take().expect("reaper stdin");
        OwnCluster {
            dir,
            admin_url,
            _reaper: stdin,
        }
    }

    /// The superuser URL (for [`crate::TestDb::on`]).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The TCP port the server listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        PgConnectOptions::from_str(&self.admin_url)
            .expect("admin url")
            .get_port()
    }

    fn run(&self, command: &str) {
        let out = script(command, &self.dir);
        assert!(
            out.status.success(),
            "throwaway-pg.sh {command} failed (see above)"
        );
    }

    /// `pg_ctl restart -m fast`: every session is terminated, the server is back at once.
    pub fn restart(&self) {
        self.run("restart");
    }

    /// Stops the server (`-m fast`) until [`OwnCluster::resume`].
    pub fn halt(&self) {
        self.run("halt");
    }

    /// Starts a halted server again, on the same port.
    pub fn resume(&self) {
        self.run("resume");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = script("stop", &self.dir);
    }
}
