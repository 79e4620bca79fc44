//! Spawning the real `learning-runner` binary against a test database.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use learning_tests::tools::{free_port, sigterm, wait_with_limit};
use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use learning_tests::TestDb;

/// A running runner process with its HTTP address.
pub struct RunnerProcess {
    pub child: Child,
    pub http: String,
}

/// The environment every spawned runner gets (the parent's environment is not inherited).
pub fn base_env(db: &TestDb, port: u16) -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert("LEARNING_DATABASE_URL".into(), db.worker_url());
    env.insert("LEARNING_HTTP_ADDR".into(), format!("127.0.0.1:{port}"));
    env.insert("LOG_FORMAT".into(), "json".into());
    env.insert("LOG_LEVEL".into(), "info".into());
    env.insert("AI_BACKEND".into(), "stub".into());
    env.insert("WORKER_POLL_INTERVAL".into(), "0.05".into());
    // The local backend must have somewhere to read files from; an empty directory will do.
    env.insert(
        "STORAGE_VERIFY_ROOT".into(),
        std::env::temp_dir().display().to_string(),
    );
    env
}

/// Spawns the binary with `env` (plus `extra`), capturing stdout and stderr.
pub fn spawn(env: &HashMap<String, String>, extra: &[(&str, &str)], args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_learning-runner"));
    cmd.env_clear()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn learning-runner")
}

/// Spawns a runner loop and waits until its HTTP server answers.
pub fn start_runner(db: &TestDb, extra: &[(&str, &str)]) -> RunnerProcess {
    let port = free_port();
    let env = base_env(db, port);
    let child = spawn(&env, extra, &[]);
    let http = format!("127.0.0.1:{port}");
    let mut runner = RunnerProcess { child, http };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_get(&runner.http, "/livez", None)
            .map(|r| r.status == 200)
            .unwrap_or(false)
        {
            return runner;
        }
        if let Ok(Some(status)) = runner.child.try_wait() {
            let (out, err) = read_output(&mut runner.child);
            panic!("runner exited early with {status}:\n{out}\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("runner did not start serving HTTP within 20 s");
}

/// Reads whatever the child wrote (call after it exited).
pub fn read_output(child: &mut Child) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    (out, err)
}

/// Parses the summary line `learning-runner stopped: completed=… …` into a map.
pub fn summary(stdout: &str) -> HashMap<String, u64> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("learning-runner stopped:"))
        .unwrap_or_else(|| panic!("no summary line in stdout:\n{stdout}"));
    line.trim_start_matches("learning-runner stopped:")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

/// A minimal HTTP/1.1 GET over a plain TCP socket.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> std::io::Result<HttpResponse> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Polls `check` until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}
