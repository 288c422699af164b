//! Test harness: a real MLflow server on 127.0.0.1 for integration tests.
//!
//! Use it from a test file with
//! ```ignore
//! #[path = "common/mlflow.rs"]
//! mod mlflow;
//! let Some(server) = mlflow::MlflowServer::start() else { return }; // skipped: no MLflow
//! // or, to share one server between the tests of a binary:
//! let Some(server) = mlflow::shared() else { return };
//! ```
//! The server runs `mlflow server --backend-store-uri sqlite:///<tmp>/mlflow.db
//! --artifacts-destination <tmp>/artifacts --host 127.0.0.1 --port <free port> --workers 1`
//! (artifact serving is on by default in 3.x), with telemetry and the job runner off, from the virtualenv at
//! `$ENGINE_MLFLOW_VENV` or else `<repo>/.venv-mlflow` (made by `scripts/mlflow-venv.sh`).
//! When that venv is missing the test is skipped with a message, unless
//! `ENGINE_REQUIRE_MLFLOW=1`, in which case it fails saying how to create the venv.
//!
//! The server gets its own process group; dropping [`MlflowServer`] kills the group and removes
//! the temp dir. A watchdog shell kills the group too if the test process dies first (this is
//! what cleans up the [`shared`] server, which is never dropped). `ENGINE_KEEP_MLFLOW_TMP=1`
//! keeps the temp dir (db, artifacts, `server.log`) for inspection.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for `/health` (server start measured at 15-60 s on a loaded 2-core box).
/// `ENGINE_MLFLOW_START_TIMEOUT` (seconds) overrides it.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `mlflow` executable of the test venv, or why there is none.
pub fn mlflow_bin() -> Result<PathBuf, String> {
    let venv = std::env::var_os("ENGINE_MLFLOW_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-mlflow"));
    let bin = venv.join("bin").join("mlflow");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no MLflow server available: {} does not exist. Create the venv with \
             `scripts/mlflow-venv.sh` (pip install mlflow==3.17.2 into .venv-mlflow), \
             or point ENGINE_MLFLOW_VENV at one",
            bin.display()
        ))
    }
}

/// True when `ENGINE_REQUIRE_MLFLOW=1`: a missing MLflow fails the test instead of skipping it.
pub fn mlflow_required() -> bool {
    std::env::var("ENGINE_REQUIRE_MLFLOW").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The `mlflow` executable, or `None` after printing why the test is skipped.
/// Panics when MLflow is required (`ENGINE_REQUIRE_MLFLOW=1`) and missing.
pub fn mlflow_or_skip() -> Option<PathBuf> {
    match mlflow_bin() {
        Ok(b) => Some(b),
        Err(why) if mlflow_required() => panic!("ENGINE_REQUIRE_MLFLOW=1 but {why}"),
        Err(why) => {
            // Straight to the process's stderr: the test harness captures `eprintln!`, which
            // would hide the skip.
            let _ = writeln!(std::io::stderr(), "SKIPPED (set ENGINE_REQUIRE_MLFLOW=1 to fail instead): {why}");
            None
        }
    }
}

/// A fresh directory under the system temp dir (removed by its owner).
pub fn scratch_dir(prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn keep_tmp() -> bool {
    std::env::var("ENGINE_KEEP_MLFLOW_TMP").is_ok_and(|v| v == "1")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind 127.0.0.1:0")
}

/// One HTTP GET on 127.0.0.1 with a short timeout; the status code.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".to_string(), format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A running `mlflow server` with its own sqlite db and artifact directory.
pub struct MlflowServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    uri: String,
    /// `sqlite:///<dir>/mlflow.db`, or a fresh PostgreSQL database (see [`backend_store`]).
    backend: String,
    child: Option<Child>,
    watchdog: Option<Child>,
    /// How long the last start took.
    pub started_in: Duration,
}

impl MlflowServer {
    /// Starts a server on a free port, or returns `None` (test skipped) when MLflow is not
    /// installed and not required. Panics when it cannot start.
    pub fn start() -> Option<Self> {
        let bin = mlflow_or_skip()?;
        let dir = scratch_dir("engine-mlflow");
        match Self::start_with(bin, dir, free_port()) {
            Ok(s) => Some(s),
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a server from `bin` storing everything under `dir`, listening on `port`.
    pub fn start_with(bin: PathBuf, dir: PathBuf, port: u16) -> Result<Self, String> {
        let backend = backend_store(&dir)?;
        let mut s = MlflowServer {
            bin,
            dir,
            port,
            uri: format!("http://127.0.0.1:{port}"),
            backend,
            child: None,
            watchdog: None,
            started_in: Duration::ZERO,
        };
        s.spawn()?;
        Ok(s)
    }

    fn start_timeout() -> Duration {
        std::env::var("ENGINE_MLFLOW_START_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_START_TIMEOUT)
    }

    fn spawn(&mut self) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let log_path = self.dir.join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let artifacts = self.dir.join("artifacts");
        let started = Instant::now();
        let child = Command::new(&self.bin)
            .args(["server", "--backend-store-uri", &self.backend, "--artifacts-destination"])
            .arg(&artifacts)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--workers", "1"])
            .current_dir(&self.dir)
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true")
            // no background job runner (huey workers): tests don't use it and it slows start-up
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .env_remove("MLFLOW_TRACKING_URI")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let pgid = child.id();
        // Kills the server's group if this test process goes away without dropping it.
        let watchdog = Command::new("sh")
            .args([
                "-c",
                "while kill -0 \"$0\" 2>/dev/null; do sleep 1; done; \
                 kill -TERM \"-$1\" 2>/dev/null; sleep 5; kill -KILL \"-$1\" 2>/dev/null; \
                 if [ \"$3\" != 1 ]; then rm -rf -- \"$2\"; fi",
                &std::process::id().to_string(),
                &pgid.to_string(),
                &self.dir.display().to_string(),
                if keep_tmp() { "1" } else { "0" },
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .ok();
        self.child = Some(child);
        self.watchdog = watchdog;
        let deadline = started + Self::start_timeout();
        loop {
            if http_status(self.port, "/health") == Some(200) {
                self.started_in = started.elapsed();
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let tail = self.log_tail(30);
                self.stop();
                return Err(format!("mlflow server exited ({status}) before answering /health; log:\n{tail}"));
            }
            if Instant::now() > deadline {
                let tail = self.log_tail(30);
                self.stop();
                return Err(format!(
                    "mlflow server on port {} did not answer /health within {:?}; log:\n{tail}",
                    self.port,
                    Self::start_timeout()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn uri(&self) -> &str {
        &self.uri
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The temp dir with `mlflow.db`, `artifacts/` and `server.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kills the server (its whole process group) and waits until the port is closed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(c.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    kill_group(c.id(), "KILL");
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // workers of the group may outlive the main process briefly
            kill_group(c.id(), "KILL");
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the server again on the same port with the same db and artifacts.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
        if keep_tmp() {
            eprintln!("kept MLflow temp dir {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The server's backend store: a sqlite file in `dir`, or, when `ENGINE_MLFLOW_POSTGRES` names a
/// PostgreSQL server (`postgresql://USER@HOST:PORT`, as `scripts/with-postgres.sh` starts one), a
/// new database of its own there, through psycopg2.
fn backend_store(dir: &Path) -> Result<String, String> {
    let Some(server) = std::env::var("ENGINE_MLFLOW_POSTGRES").ok().filter(|s| !s.is_empty()) else {
        return Ok(format!("sqlite:///{}", dir.join("mlflow.db").display()));
    };
    static DATABASES: AtomicU32 = AtomicU32::new(0);
    let name = format!("mlflow_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));
    let created = Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !created.status.success() {
        return Err(format!("cannot create database {name} on {server}: {}", String::from_utf8_lossy(&created.stderr)));
    }
    let server = server.replacen("postgresql://", "postgresql+psycopg2://", 1);
    Ok(format!("{server}/{name}"))
}

/// One server shared by all tests of a test binary (started on first use; killed by the
/// watchdog when the test process exits). `None` when MLflow is missing and not required.
pub fn shared() -> Option<&'static MlflowServer> {
    static SERVER: OnceLock<Option<MlflowServer>> = OnceLock::new();
    SERVER.get_or_init(MlflowServer::start).as_ref()
}
