//! A server child process that can stop, be killed and start again with the same command
//! (same port, same data), whose output goes to a log file quoted in every failure.

use std::{
    future::Future,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Builds the command that starts the server; called again on every start, so a restart
/// runs exactly the same command line (ports and folders included).
pub(crate) type Launcher = Box<dyn Fn() -> Command + Send + Sync>;

/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the processes of a killed tree may take to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of the log quoted in errors.
const TAIL_LINES: usize = 30;

/// One server process (and, for PostgreSQL, the processes it forks) with its log file.
pub(crate) struct Server {
    name: String,
    launcher: Launcher,
    log: PathBuf,
    /// Signal for a graceful stop (`TERM`, or `INT` for PostgreSQL's fast shutdown).
    stop_signal: &'static str,
    child: Option<Child>,
}

impl Server {
    /// A server that is not running yet; [`Server::start`] launches it.
    pub(crate) fn new(
        name: &str,
        log: &Path,
        stop_signal: &'static str,
        launcher: Launcher,
    ) -> Self {
        Server {
            name: name.to_owned(),
            launcher,
            log: log.to_owned(),
            stop_signal,
            child: None,
        }
    }

    /// Launches the process (no-op while it runs); stdout and stderr are appended to the log.
    pub(crate) fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open log {}", self.log.display()))?;
        let mut cmd = (self.launcher)();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} ({:?})", self.name, cmd.get_program()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Process id while running.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file (stdout and stderr of every start, appended).
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has exited on its own.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Polls `probe` until it succeeds; fails at once, with the log tail, if the process exits,
    /// and after `timeout` with the probe's last error and the log tail.
    pub(crate) async fn wait_ready<F, Fut>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.child.is_none() {
                bail!("{} is not running (waiting for {what})", self.name);
            }
            if let Some(status) = self.exited() {
                self.child = None;
                bail!(
                    "{} exited ({status}) while waiting for {what}; {}",
                    self.name,
                    self.log_tail()
                );
            }
            let last = match tokio::time::timeout(Duration::from_secs(5), probe()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "probe hung for 5s".to_owned(),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what} (last: {last}); {}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Graceful stop: the stop signal, then waits for the exit (SIGKILL and an error after
    /// [`STOP_TIMEOUT`], so a hung shutdown is reported instead of hidden).
    pub(crate) fn stop(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        signal(self.stop_signal, &[child.id()]);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                self.child = None;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9()?;
        bail!(
            "{} did not stop within {STOP_TIMEOUT:?} of SIG{}; killed it; {}",
            self.name,
            self.stop_signal,
            self.log_tail()
        )
    }

    /// SIGKILL of the process and everything it forked, like a power cut: nothing flushes.
    /// The parent is frozen first (so it cannot fork while its children are listed), and
    /// this returns once all of them are gone, so the port and data can be reused at once.
    pub(crate) fn kill9(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        signal("STOP", &[pid]);
        let mut all = descendants(pid);
        all.push(pid);
        signal("KILL", &all);
        child
            .wait()
            .with_context(|| format!("reap {}", self.name))?;
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            let alive: Vec<u32> = all.iter().copied().filter(|p| is_alive(*p)).collect();
            if alive.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "processes {alive:?} of {} still alive {KILL_TIMEOUT:?} after SIGKILL",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last lines of the log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "log {} ends with:\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.kill9() {
            eprintln!("meshsync-testkit: {e:#}");
        }
    }
}

/// Whether this process runs as root (PostgreSQL then needs another user, MariaDB `--user`).
pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Sends `SIG<sig>` with `kill(1)` (the workspace forbids `unsafe`, so no libc); errors are
/// ignored: a process that is already gone needs no signal.
fn signal(sig: &str, pids: &[u32]) {
    let _ = Command::new("kill")
        .arg("-s")
        .arg(sig)
        .arg("--")
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `(state, ppid)` from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Alive means present and not a zombie (an orphan's zombie may wait for a PID 1 that never
/// reaps; it holds no port, memory or file).
fn is_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
}

/// All processes below `root`, from `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?.1)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}
