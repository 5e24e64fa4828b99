//! The binlog driver (mysql_common 0.37) can panic on malformed input: it indexes a table
//! map's column metadata without bounds checks, so a table map without metadata panics the
//! decoding of the next rows event. A panic would take the whole agent down and meet the same
//! event again on every restart; here it becomes a decode error naming what was being read:
//! capture logs it and retries with back-off, and apply goes on.

use std::{any::Any, future::Future, panic::AssertUnwindSafe};

use futures::FutureExt;

use crate::error::MariaDbError;

/// Runs `decode`, turning a panic inside it into [`MariaDbError::Decode`].
pub fn decoding<T>(
    what: &str,
    decode: impl FnOnce() -> Result<T, MariaDbError>,
) -> Result<T, MariaDbError> {
    std::panic::catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|p| Err(failed(what, &p)))
}

/// [`decoding`] for a future (reading the stream, handling an event); `what` is only worded
/// when needed (this runs once per binlog event).
pub async fn decoding_async<T>(
    what: impl FnOnce() -> String,
    decode: impl Future<Output = Result<T, MariaDbError>>,
) -> Result<T, MariaDbError> {
    AssertUnwindSafe(decode)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(failed(&what(), &p)))
}

fn failed(what: &str, panic: &Box<dyn Any + Send>) -> MariaDbError {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    MariaDbError::Decode(format!(
        "{what}: the binlog driver failed on malformed input ({detail}); the server's binlog may \
         be damaged or from an unsupported version"
    ))
}
