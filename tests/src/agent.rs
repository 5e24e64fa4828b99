//! A `meshsync run` process: the real binary, killed and restarted like in production.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context, Result, bail};
use meshsync_testkit::workspace_root;

/// The meshsync binary: `MESHSYNC_BIN`, or the workspace's debug build.
pub fn binary() -> Result<PathBuf> {
    let path = std::env::var_os("MESHSYNC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/meshsync"));
    if !path.exists() {
        bail!(
            "{} not found: build it first (cargo build --bin meshsync), as scripts/test does",
            path.display()
        );
    }
    Ok(path)
}

/// A running agent; dropping it kills it.
pub struct Agent {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Agent {
    /// Starts `meshsync run --config <config>`; its log goes next to the config.
    pub fn start(config: &Path) -> Result<Agent> {
        Self::start_with_env(config, &[])
    }

    /// As [`Agent::start`], with extra environment variables (e.g. a failpoint).
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Result<Agent> {
        let mut a = Agent {
            config: config.to_owned(),
            log: config.with_extension("log"),
            child: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        a.restart()?;
        Ok(a)
    }

    /// Replaces the extra environment for the next (re)start.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// Waits for the process to exit on its own; its status.
    pub async fn wait_exit(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!("agent did not exit within {timeout:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as `docker stop` sends; the process is left to exit on its own.
    pub fn terminate(&mut self) -> Result<()> {
        if let Some(c) = &self.child {
            let pid = rustix::process::Pid::from_child(c);
            rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        }
        Ok(())
    }

    /// SIGKILL: a crash at whatever point it was.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts it (again) with the same config; the log is appended to.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(binary()?)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            // A progress line every second, so tests can read the running totals.
            .args(["--progress-interval-s", "1"])
            .env("RUST_LOG", "info,meshsync=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start the agent")?;
        self.child = Some(child);
        Ok(())
    }

    /// Fails with the log if it exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            bail!("agent exited ({status}); log:\n{}", self.log());
        }
        Ok(())
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
