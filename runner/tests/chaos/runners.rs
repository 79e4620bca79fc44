//! Runner processes for the chaos scenarios: like the other process tests, but their output
//! goes to files instead of pipes — a scenario with thousands of warnings (a database
//! restart) must never block a runner on a full pipe — and the files are shown when a
//! scenario fails.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use learning_tests::TestDb;

use crate::common::process::{base_env, free_port, http_get, sigterm, summary, RunnerProcess};

/// A runner whose stdout and stderr go to files.
pub struct ChaosRunner {
    /// The process and its HTTP address.
    pub process: RunnerProcess,
    out: PathBuf,
    err: PathBuf,
}

/// Starts a runner on `db` with `extra` settings and waits until it serves `/livez`.
pub fn start(db: &TestDb, extra: &[(&str, &str)]) -> ChaosRunner {
    let port = free_port();
    let env = base_env(db, port);
    let dir = std::env::temp_dir().join(format!("chaos-runner-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_learning-runner"));
    cmd.env_clear()
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    cmd.envs(env).envs(extra.iter().copied());
    let child = cmd.spawn().expect("spawn learning-runner");
    let mut runner = ChaosRunner {
        process: RunnerProcess {
            child,
            http: format!("127.0.0.1:{port}"),
        },
        out,
        err,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http_get(&runner.process.http, "/livez", None).is_ok_and(|r| r.status == 200) {
            return runner;
        }
        if let Ok(Some(status)) = runner.process.child.try_wait() {
            panic!("runner exited early with {status}:\n{}", runner.tail());
        }
        assert!(
            Instant::now() < deadline,
            "runner did not serve /livez within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl ChaosRunner {
    /// The last lines of its output (for failure messages).
    pub fn tail(&self) -> String {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let text = format!("{}\n{}", read(&self.out), read(&self.err));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL, as the OOM killer or a node failure would.
    pub fn kill(&mut self) {
        self.process.child.kill().expect("SIGKILL the runner");
        let _ = self.process.child.wait();
    }

    /// SIGTERM, wait for a clean exit, and the totals of its summary line.
    pub fn stop(mut self) -> HashMap<String, u64> {
        sigterm(&self.process.child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.process.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "runner did not stop within 60 s:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "runner exited with {status}:\n{}",
            self.tail()
        );
        summary(&std::fs::read_to_string(&self.out).unwrap())
    }

    /// Its peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }
}

impl Drop for ChaosRunner {
    fn drop(&mut self) {
        if let Ok(None) = self.process.child.try_wait() {
            let _ = self.process.child.kill();
            let _ = self.process.child.wait();
        }
    }
}

/// Sums one total over several runners' summaries.
pub fn total(summaries: &[HashMap<String, u64>], key: &str) -> u64 {
    summaries.iter().map(|s| s[key]).sum()
}
