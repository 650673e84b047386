//! The Google Cloud Pub/Sub emulator for tests: started on a free local port with its own
//! data directory (`gcloud beta emulators pubsub start --host-port=127.0.0.1:PORT
//! --data-dir=DIR`, which needs the directory to exist), polled until it answers, and
//! killed with its whole process group when dropped (gcloud starts a Java child that
//! would otherwise outlive it).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::FakeError;

/// How long the emulator may take to answer (it usually takes about five seconds).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Pub/Sub emulator; dropping it stops it.
pub struct PubSubEmulator {
    child: Child,
    port: u16,
    log: PathBuf,
    // Removed after the emulator is killed (fields drop after `drop` runs).
    _data_dir: tempfile::TempDir,
}

impl PubSubEmulator {
    /// Starts the emulator and waits until it answers.
    pub async fn start() -> Result<PubSubEmulator, FakeError> {
        let mut last_error = String::new();
        // A port found free can be taken before the emulator binds it: try again.
        for _ in 0..3 {
            match Self::start_once().await {
                Ok(emulator) => return Ok(emulator),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(FakeError::Emulator(last_error))
    }

    async fn start_once() -> Result<PubSubEmulator, FakeError> {
        let emulator_error = |m: String| FakeError::Emulator(m);
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| emulator_error(format!("no free port: {e}")))?;
        let data_dir = tempfile::tempdir().map_err(|e| emulator_error(format!("data dir: {e}")))?;
        let log = data_dir.path().join("emulator.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| emulator_error(format!("log: {e}")))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| emulator_error(format!("log: {e}")))?;
        let store = data_dir.path().join("data");
        std::fs::create_dir_all(&store).map_err(|e| emulator_error(format!("data dir: {e}")))?;
        let child = Command::new("gcloud")
            .args(["beta", "emulators", "pubsub", "start", "--quiet"])
            .arg(format!("--host-port=127.0.0.1:{port}"))
            .arg(format!("--data-dir={}", store.display()))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            // Its own process group, so that dropping kills gcloud and Java together.
            .process_group(0)
            .spawn()
            .map_err(|e| emulator_error(format!("gcloud could not be started: {e}")))?;
        let mut emulator = PubSubEmulator {
            child,
            port,
            log,
            _data_dir: data_dir,
        };
        emulator.wait_ready().await?;
        Ok(emulator)
    }

    async fn wait_ready(&mut self) -> Result<(), FakeError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| FakeError::Emulator(e.to_string()))?;
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(FakeError::Emulator(format!(
                    "the emulator exited ({status}): {}",
                    self.log_tail()
                )));
            }
            if let Ok(response) = http.get(self.url()).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(FakeError::Emulator(format!(
            "no answer after {START_TIMEOUT:?}: {}",
            self.log_tail()
        )))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or("").to_owned()
    }

    /// `http://127.0.0.1:PORT`: the base URL of its REST API (`/v1/projects/...`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The gcloud process's id, which is also its process group's.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:PORT`, as `PUBSUB_EMULATOR_HOST` takes it.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for PubSubEmulator {
    fn drop(&mut self) {
        // The group id is the child's pid (process_group(0)); a negative pid names the group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
