//! Which server this is: MariaDB or MySQL. They share the wire protocol and the ROW binlog
//! layout, but differ in GTIDs (MariaDB `domain-server-seq`, MySQL `uuid:n` sets), the binlog
//! request (`@slave_connect_state` vs COM_BINLOG_DUMP_GTID), loop prevention
//! (`skip_replication` exists on MariaDB only) and some SQL (`SET STATEMENT .. FOR`).

use std::fmt;

use sqlx::MySqlConnection;

use crate::error::MariaDbError;

/// The server family, from `VERSION()` and `@@version_comment`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// MariaDB (any version; [`crate::check`] refuses those before 10.5).
    MariaDb,
    /// MySQL or a compatible fork (Percona Server); [`crate::check`] refuses those before 8.0.
    MySql,
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavour::MariaDb => "MariaDB",
            Flavour::MySql => "MySQL",
        })
    }
}

impl Flavour {
    /// The family of a server reporting `version` (`10.11.6-MariaDB-log`, `8.0.36`) and
    /// `comment` (`mariadb.org binary distribution`, `MySQL Community Server - GPL`). MariaDB
    /// names itself in one of the two (some distributions only in the comment); every
    /// other server speaks MySQL's dialect.
    pub fn from_version(version: &str, comment: &str) -> Flavour {
        let says_mariadb = |s: &str| s.to_ascii_lowercase().contains("mariadb");
        if says_mariadb(version) || says_mariadb(comment) {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        }
    }

    /// Asks the server.
    pub async fn detect(conn: &mut MySqlConnection) -> Result<Flavour, MariaDbError> {
        let (version, comment) = version_and_comment(conn).await?;
        Ok(Flavour::from_version(&version, &comment))
    }
}

/// `VERSION()` and `@@version_comment`.
pub async fn version_and_comment(
    conn: &mut MySqlConnection,
) -> Result<(String, String), MariaDbError> {
    sqlx::query_as("SELECT CAST(VERSION() AS CHAR), CAST(@@version_comment AS CHAR)")
        .fetch_one(conn)
        .await
        .map_err(MariaDbError::query("read the server version"))
}

/// `(major, minor)` of a version text such as `10.11.6-MariaDB-log` or `8.0.36-28`.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => Some((major, minor)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_from_version_or_comment() {
        let cases = [
            (
                "10.11.6-MariaDB-log",
                "mariadb.org binary distribution",
                Flavour::MariaDb,
            ),
            ("10.11.19-MariaDB-0+deb12u1", "Debian 12", Flavour::MariaDb),
            ("5.5.5-10.6.12", "MariaDB Server", Flavour::MariaDb),
            ("8.0.36", "MySQL Community Server - GPL", Flavour::MySql),
            ("8.4.0-1", "Percona Server (GPL), Release 1", Flavour::MySql),
        ];
        for (version, comment, want) in cases {
            assert_eq!(Flavour::from_version(version, comment), want, "{version}");
        }
        assert_eq!(major_minor("8.0.36-28"), Some((8, 0)));
        assert_eq!(major_minor("10.11.6-MariaDB"), Some((10, 11)));
        assert_eq!(major_minor("eight"), None);
    }
}
