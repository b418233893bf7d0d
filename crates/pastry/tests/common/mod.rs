//! What the process tests share: temporary data directories, `pastry node` processes
//! killed when dropped, and polling until a condition holds.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `pastry` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_pastry");

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = std::env::temp_dir().join(format!("pastry-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `pastry node` process, killed when dropped.
pub struct NodeProc {
    pub child: Child,
    pub http: String,
    pub id: String,
    pub addr: String,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pastry node` on 127.0.0.1 (ports picked by the OS) and waits until it prints
/// its admin URL and its id and address.
pub fn start(data_dir: &Path, config: &Path, bootstrap: Option<&str>) -> NodeProc {
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let mut child = cmd.spawn().expect("spawn pastry node");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut http, mut id, mut addr) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.is_none() || id.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("pastry node printed its addresses");
        if let Some(u) = line.strip_prefix("admin ") {
            http = Some(u.to_string());
        } else if let Some(rest) = line.strip_prefix("node ") {
            let mut w = rest.split_whitespace();
            if let (Some(i), Some("listening"), Some("on"), Some(a)) =
                (w.next(), w.next(), w.next(), w.next())
            {
                id = Some(i.to_string());
                addr = Some(a.to_string());
            }
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    NodeProc {
        child,
        http: http.unwrap(),
        id: id.unwrap(),
        addr: addr.unwrap(),
    }
}

/// Polls `cond` until it holds or `secs` pass (then panics with `what`).
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(50)); // polling interval, not synchronisation
    }
    start.elapsed()
}
