//! Running MLflow's own server over a store in the project directory: starting `mlflow server`
//! in a process group of its own, waiting until it answers `/health`, and stopping that group
//! (the server's workers included) and nothing else. Its output is kept, not shown: the last
//! lines explain a server that dies.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::mlflow_bin::ServerError;

/// How many lines of the server's output are kept for error messages.
const LOG_LINES: usize = 40;

/// What to start: the executable and the options of `mlflow server`.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub mlflow: PathBuf,
    pub host: String,
    pub port: u16,
    /// `--backend-store-uri`; a relative `sqlite:///` path is relative to `project_dir`.
    pub backend_store_uri: String,
    /// `--artifacts-destination`: where the server keeps artifacts it is sent.
    pub artifacts_destination: PathBuf,
    pub workers: u32,
    /// The server's working directory.
    pub project_dir: PathBuf,
    /// How long to wait for `/health` (a cold start takes 15-60 s on a loaded 2-core machine).
    pub start_timeout: Duration,
}

/// A running `mlflow server`, leader of its own process group. Dropping it stops the group.
#[derive(Debug)]
pub struct MlflowServer {
    child: Child,
    url: String,
    log: Arc<Mutex<VecDeque<String>>>,
    /// The threads reading its output: done once it and its group are gone.
    readers: Vec<JoinHandle<()>>,
    stopped: bool,
}

impl MlflowServer {
    /// Checks the port and the store, starts the server and waits until it answers. Gives up
    /// (stopping it) when `interrupted` becomes true, the server exits, or the timeout passes.
    pub fn start(options: &ServerOptions, interrupted: &AtomicBool) -> Result<Self, ServerError> {
        check_port(&options.host, options.port)?;
        check_store(&options.backend_store_uri, &options.project_dir)?;
        let artifacts = &options.artifacts_destination;
        std::fs::create_dir_all(artifacts).map_err(|e| ServerError::Store {
            uri: artifacts.display().to_string(),
            detail: format!("cannot create the artifacts directory: {e}"),
        })?;
        let mut server = Self::spawn(options)?;
        server.wait_until_healthy(options.start_timeout, interrupted)?;
        Ok(server)
    }

    fn spawn(options: &ServerOptions) -> Result<Self, ServerError> {
        let mut command = Command::new(&options.mlflow);
        command
            .args(["server", "--backend-store-uri", &options.backend_store_uri, "--artifacts-destination"])
            .arg(&options.artifacts_destination)
            .args(["--host", &options.host, "--port", &options.port.to_string()])
            .args(["--workers", &options.workers.to_string()])
            .current_dir(&options.project_dir)
            // our own tracking settings are not the server's
            .env_remove("MLFLOW_TRACKING_URI")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a Ctrl-C in the terminal reaches only us, and stopping the group
            // stops the workers the server forks.
            .process_group(0);
        die_with_parent(&mut command);
        let mut child = command.spawn().map_err(|source| ServerError::Spawn { bin: options.mlflow.clone(), source })?;
        started_groups().lock().map(|mut g| g.push(child.id())).ok();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let mut readers = Vec::new();
        readers.extend(child.stdout.take().map(|out| keep_lines(out, log.clone())));
        readers.extend(child.stderr.take().map(|err| keep_lines(err, log.clone())));
        let url = format!("http://{}:{}", url_host(&options.host), options.port);
        Ok(MlflowServer { child, url, log, readers, stopped: false })
    }

    fn wait_until_healthy(&mut self, timeout: Duration, interrupted: &AtomicBool) -> Result<(), ServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if answers_health(&self.url) {
                return Ok(());
            }
            if let Some(status) = self.exit_status() {
                self.stop();
                return Err(ServerError::Exited { status, when: "before answering", log: self.log_tail() });
            }
            if interrupted.load(Ordering::SeqCst) {
                self.stop();
                return Err(ServerError::Interrupted);
            }
            if Instant::now() > deadline {
                let log = self.log_tail();
                self.stop();
                return Err(ServerError::NoAnswer { url: self.url.clone(), secs: timeout.as_secs(), log });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `http://host:port`, with a wildcard host (`0.0.0.0`, `::`) shown as `127.0.0.1`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id (also its process group's id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the server ended, if it has.
    pub fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown: {e}")),
        }
    }

    /// The last lines the server printed (all of them once it is stopped).
    pub fn log_tail(&self) -> String {
        self.log.lock().map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }

    /// Stops the server's process group: SIGTERM, then SIGKILL for whatever is left after 10 s
    /// (workers included). Waits until no process of the group remains.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pgid = self.child.id();
        signal_group(pgid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exit_status().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        signal_group(pgid, libc::SIGKILL);
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        started_groups().lock().map(|mut g| g.retain(|p| *p != pgid)).ok();
        // The group is gone, so its pipes are closed: the readers finish with its last words.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills every server group this process started and has not stopped yet, at once: for a
/// process about to exit without unwinding (a second Ctrl-C).
pub fn kill_started_servers() {
    if let Ok(groups) = started_groups().lock() {
        groups.iter().for_each(|pgid| signal_group(*pgid, libc::SIGKILL));
    }
}

fn started_groups() -> &'static Mutex<Vec<u32>> {
    static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    &GROUPS
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: killpg only sends a signal; a group that is gone answers ESRCH.
        unsafe { libc::killpg(pgid, signal) };
    }
}

/// Whether any process of the group is left (signal 0 checks without sending).
pub fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return false };
    // SAFETY: signal 0 sends nothing.
    unsafe { libc::killpg(pgid, 0) == 0 }
}

/// On Linux, the process `command` starts gets SIGTERM if this process dies without stopping it
/// (killed with SIGKILL), and does not start if this process died while spawning it. The
/// spawning thread must live as long as the child: `engine ui` spawns its server, and a sweep its
/// workers, from the main thread.
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe and touch only the child being set up.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                // A parent that died before the prctl sends no signal: stop here instead.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(std::io::Error::other("the parent process is gone"));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Keeps the last [`LOG_LINES`] lines of a pipe (read on a thread, so the server never blocks
/// on a full pipe).
fn keep_lines(pipe: impl Read + Send + 'static, log: Arc<Mutex<VecDeque<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Ok(mut lines) = log.lock() {
                if lines.len() == LOG_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        }
    })
}

fn url_host(host: &str) -> String {
    match host {
        "" | "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_string(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    }
}

/// Refuses a port something else listens on before starting a server that would only die.
fn check_port(host: &str, port: u16) -> Result<(), ServerError> {
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match TcpListener::bind(addr.as_str()) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(ServerError::PortInUse { addr }),
        Err(source) => Err(ServerError::Bind { addr, source }),
    }
}

/// A `sqlite:///` store whose directory is missing or whose file is not a writable file would
/// make the server die at start with a Python traceback: say so first, in one line.
fn check_store(uri: &str, project_dir: &Path) -> Result<(), ServerError> {
    let Some(path) = uri.strip_prefix("sqlite:///") else { return Ok(()) };
    let path = project_dir.join(path.split('?').next().unwrap_or(path));
    let problem = |detail: String| ServerError::Store { uri: uri.to_string(), detail };
    let dir = path.parent().unwrap_or(project_dir);
    if !dir.is_dir() {
        return Err(problem(format!("the directory {} does not exist", dir.display())));
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| problem(format!("cannot open {} for writing: {e}", path.display())))?;
    }
    Ok(())
}

/// One `GET /health` with short timeouts: true on a 200.
fn answers_health(url: &str) -> bool {
    let Some(authority) = url.strip_prefix("http://") else { return false };
    let Some(addr) = authority.to_socket_addrs().ok().and_then(|mut a| a.next()) else { return false };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return false };
    if stream.set_read_timeout(Some(Duration::from_secs(5))).is_err() {
        return false;
    }
    let request = format!("GET /health HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).unwrap_or(0);
    String::from_utf8_lossy(&head[..n]).split_whitespace().nth(1) == Some("200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_hosts_are_reached_on_loopback() {
        assert_eq!(url_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(url_host("::"), "127.0.0.1");
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("localhost"), "localhost");
    }

    #[test]
    fn a_port_in_use_is_refused() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        assert!(matches!(check_port("127.0.0.1", port), Err(ServerError::PortInUse { .. })));
    }

    #[test]
    fn a_sqlite_store_in_a_missing_directory_is_refused() {
        let dir = std::env::temp_dir();
        assert!(check_store("sqlite:///mlflow.db", &dir).is_ok());
        assert!(matches!(check_store("sqlite:///no/such/dir/mlflow.db", &dir), Err(ServerError::Store { .. })));
        assert!(check_store("postgresql://db/mlflow", &dir).is_ok());
    }
}
