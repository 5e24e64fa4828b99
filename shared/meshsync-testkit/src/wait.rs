//! Polling with a deadline instead of sleeping, and free ports.

use std::{future::Future, net::TcpListener, time::Duration};

use anyhow::{Context, Result, bail};

/// How often [`wait_until`] polls: short, so waits end soon after the condition holds.
const POLL: Duration = Duration::from_millis(50);

/// What a [`wait_until`] check may return: `Option<T>` (ready with `Some`), `bool` (ready
/// with `true`) or `Result<T, E>` (ready with `Ok`; the last error is quoted on timeout).
pub trait Check {
    /// The value handed back once ready.
    type Value;
    /// `Ok(value)` when ready, else `Err(why not yet, if known)`.
    fn ready(self) -> Result<Self::Value, Option<String>>;
}

impl<T> Check for Option<T> {
    type Value = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl Check for bool {
    type Value = ();
    fn ready(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T, E: std::fmt::Debug> Check for Result<T, E> {
    type Value = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(format!("{e:?}")))
    }
}

/// Polls `check` every 50 ms until it is ready, failing after `timeout` with an error that
/// names `what` was awaited (and the last error, for `Result` checks). Tests wait on
/// conditions, never on fixed sleeps.
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<<Fut::Output as Check>::Value>
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Check,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await.ready() {
            Ok(v) => return Ok(v),
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            match last {
                Some(last) => {
                    bail!("timed out after {timeout:?} waiting for {what} (last: {last})")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A TCP port free right now on 127.0.0.1 (bound to port 0, read, released). Another
/// process may take it before the server binds: pick it right before starting the server.
pub fn free_port() -> Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `n` distinct free ports (all held until every one is picked, so none repeats).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0 for a free port"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Runs `start` (which picks fresh ports each time) once more if it failed because a port
/// was taken between picking and binding; other failures are returned at once.
pub(crate) async fn retry_on_port_race<T>(mut start: impl AsyncFnMut() -> Result<T>) -> Result<T> {
    match start().await {
        Err(e)
            if format!("{e:#}")
                .to_lowercase()
                .contains("address already in use") =>
        {
            start()
                .await
                .context("second start, on fresh ports, after a port race")
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_timeout_names_what_was_awaited() {
        let err = wait_until("the sky to fall", Duration::from_millis(100), || async {
            Err::<(), _>("still up")
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("the sky to fall"), "{err}");
        assert!(err.contains("still up"), "{err}");
    }

    #[tokio::test]
    async fn bool_and_option_checks() {
        let mut n = 0;
        wait_until("a third poll", Duration::from_secs(10), || {
            n += 1;
            let done = n >= 3;
            async move { done }
        })
        .await
        .unwrap();
        let v = wait_until("a value", Duration::from_secs(10), || async { Some(7) })
            .await
            .unwrap();
        assert_eq!(v, 7);
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(8).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 8);
    }
}
