//! A string that must not leak into logs.

use std::fmt;

use serde::Deserialize;

/// A secret string (e.g. a URL with a password): `Debug` and `Display` show it redacted, and
/// it is deliberately not `Serialize`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The text with any `user:password@` password replaced, for messages.
    pub fn redacted(&self) -> String {
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &self.0[scheme + 3..at];
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{}://{}:***@{}", &self.0[..scheme], user, &self.0[at + 1..])
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.redacted())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let s = Secret::new("postgres://app:hunter2@db:5432/app");
        assert_eq!(s.redacted(), "postgres://app:***@db:5432/app");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!s.to_string().contains("hunter2"));
        assert_eq!(s.expose(), "postgres://app:hunter2@db:5432/app");
    }
}
