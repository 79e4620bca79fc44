//! Shared helpers for tests that drive real programs: a free local port, external tools that
//! must be installed (a missing tool fails the test loudly, saying how to install it — never a
//! silent skip), `kubernetes-validate`, child processes that are waited for with a limit, and
//! temporary directories.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How to get `kubernetes-validate`.
pub const HINT_KUBERNETES_VALIDATE: &str = "install it with `make deps` (kubernetes-validate from \
     PyPI, into .tools/venv: outside make, put .tools/venv/bin on PATH)";
/// How to get `check-jsonschema`.
pub const HINT_CHECK_JSONSCHEMA: &str = "install it with `make deps` (check-jsonschema from \
     PyPI, into .tools/venv: outside make, put .tools/venv/bin on PATH)";
/// How to get `promtool`.
pub const HINT_PROMTOOL: &str = "install the Debian package prometheus (make deps)";
/// How to get `shellcheck`.
pub const HINT_SHELLCHECK: &str = "install the Debian package shellcheck (make deps)";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

/// Fails the test unless `tool --version` runs.
pub fn require_tool(tool: &str, hint: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{tool} is not installed or does not run: {hint}");
}

/// Runs a command to its end; fails the test with `hint` when the program cannot be started.
pub fn run(cmd: &mut Command, hint: &str) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?} ({e}): {hint}",
            cmd.get_program().to_string_lossy()
        )
    })
}

/// What a finished command wrote, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubernetes-validate --strict -k <version> <file>`; the caller judges the output.
pub fn kubernetes_validate(file: &Path, version: &str) -> Output {
    run(
        Command::new("kubernetes-validate")
            .args(["--strict", "-k", version])
            .arg(file),
        HINT_KUBERNETES_VALIDATE,
    )
}

/// `check-jsonschema --builtin-schema <schema> <file>`.
pub fn check_jsonschema(schema: &str, file: &Path) -> Output {
    run(
        Command::new("check-jsonschema")
            .args(["--builtin-schema", schema])
            .arg(file),
        HINT_CHECK_JSONSCHEMA,
    )
}

/// Waits for `child` to exit within `limit`, reading its piped stdout and stderr on threads
/// (a chatty child never blocks on a full pipe); kills it and fails the test past the limit.
pub fn wait_with_limit(child: &mut Child, limit: Duration) -> (ExitStatus, String, String) {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return (status, out.join().unwrap(), err.join().unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process did not exit within {limit:?}:\n{}\n{}",
                out.join().unwrap(),
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -TERM {} failed", child.id());
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory; `tag` goes into its name.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "gustav-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    /// Writes `file` in the directory and returns its path.
    pub fn write(&self, file: &str, content: &str) -> PathBuf {
        let p = self.0.join(file);
        std::fs::write(&p, content).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn a_missing_tool_fails_loudly_with_its_hint() {
        let panic = std::panic::catch_unwind(|| {
            require_tool("surely-not-an-installed-tool", "install it somehow")
        })
        .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("install it somehow"), "{message}");
    }

    #[test]
    fn waits_for_a_child_and_reads_its_output() {
        let mut child = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (status, out, err) = wait_with_limit(&mut child, Duration::from_secs(10));
        assert_eq!(
            (status.code(), out.trim(), err.trim()),
            (Some(3), "out", "err")
        );
        assert_ne!(free_port(), 0);
    }
}
