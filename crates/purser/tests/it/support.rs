//! Starting and stopping `purser` processes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BINARY: &str = env!("CARGO_BIN_EXE_purser");

/// A `purser` command with a clean environment for Purser's own variables.
pub fn purser(args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .kill_on_drop(true)
        .current_dir(std::env::temp_dir());
    for (key, _) in std::env::vars() {
        if key.starts_with("PURSER_") {
            command.env_remove(key);
        }
    }
    command.env("PURSER_LOG_LEVEL", "warn");
    command
}

/// Runs a command to completion: (success, stdout, stderr).
pub async fn run(mut command: Command, stdin: Option<&str>) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("purser starts");
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(input.as_bytes()).await.expect("stdin");
    }
    drop(child.stdin.take());
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the command finishes within a minute")
        .expect("output");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running `purser serve` or `purser demo`.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// Everything printed before the address (the demo's sign-ins).
    pub banner: String,
}

impl Server {
    /// Starts the command (which must listen on port 0) and waits for its address.
    pub async fn start(mut command: Command) -> Server {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().expect("purser starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = String::new();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            let mut url = None;
            while let Ok(Some(line)) = lines.next_line().await {
                banner.push_str(&line);
                banner.push('\n');
                // `serve` prints one line; `demo` prints its pages, sign-ins, then how to stop.
                if let Some(address) = line.strip_prefix("Purser is listening on ") {
                    return Some(address.trim().to_owned());
                }
                if let Some(rest) = line.strip_prefix("Pages:") {
                    url = Some(rest.trim().trim_end_matches('/').to_owned());
                }
                if line.starts_with("Stop with Ctrl-C") {
                    return url;
                }
            }
            None
        })
        .await
        .expect("the server starts within a minute")
        .unwrap_or_else(|| panic!("the server printed no address: {banner}"));
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child, url, banner }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().map(|id| id as i32).expect("running")
    }

    /// SIGTERM, then wait; returns whether it exited cleanly.
    pub async fn stop(mut self) -> bool {
        signal(self.pid(), "TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("stops within 30 s")
            .expect("status");
        status.success()
    }

    pub async fn kill(mut self) {
        signal(self.pid(), "KILL");
        let _ = self.child.wait().await;
    }
}

pub fn signal(pid: i32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

pub fn data_dir_arg(dir: &Path) -> String {
    dir.display().to_string()
}
