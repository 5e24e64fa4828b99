//! Start-up check: the server must write a binlog meshsync can capture from. Each refusal
//! names the setting, the value found and the fix.

use sqlx::MySqlConnection;

use crate::error::MariaDbError;

/// The server settings capture depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// `@@log_bin`: the binlog is written.
    pub log_bin: bool,
    /// `@@binlog_format` (`ROW` needed).
    pub binlog_format: String,
    /// `@@binlog_row_image` (`FULL` needed).
    pub binlog_row_image: String,
    /// `@@binlog_row_metadata` (`FULL` needed: column names, signedness, ENUM/SET labels).
    pub binlog_row_metadata: String,
    /// `@@log_bin_compress` (must be off: compressed events do not decode).
    pub log_bin_compress: bool,
    /// `@@version`, e.g. `10.11.6-MariaDB-log`.
    pub version: String,
}

/// A server setting meshsync cannot capture with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No binlog.
    #[error(
        "log_bin is OFF; meshsync reads the binary log: set log_bin (e.g. log_bin=mariadb-bin) \
         in my.cnf [mysqld] and restart"
    )]
    LogBin,
    /// Not ROW format.
    #[error(
        "binlog_format is {found}; meshsync needs ROW: set binlog_format=ROW in my.cnf [mysqld] \
         and restart (SET GLOBAL affects new sessions only)"
    )]
    Format {
        /// The value found.
        found: String,
    },
    /// Not full row images.
    #[error(
        "binlog_row_image is {found}; meshsync needs FULL (whole before and after images): set \
         binlog_row_image=FULL in my.cnf [mysqld] and restart (SET GLOBAL affects new sessions \
         only)"
    )]
    RowImage {
        /// The value found.
        found: String,
    },
    /// No column names in the table maps.
    #[error(
        "binlog_row_metadata is {found}; meshsync needs FULL (column names, signedness, ENUM \
         and SET labels in the binlog): set binlog_row_metadata=FULL in my.cnf [mysqld] and \
         restart (SET GLOBAL affects new sessions only)"
    )]
    RowMetadata {
        /// The value found.
        found: String,
    },
    /// Compressed binlog events.
    #[error(
        "log_bin_compress is ON; meshsync cannot read compressed binlog events: set \
         log_bin_compress=OFF in my.cnf [mysqld] and restart"
    )]
    Compressed,
    /// Not MariaDB, or older than 10.5.
    #[error(
        "version is {found}; meshsync needs MariaDB 10.5 or later (binlog_row_metadata=FULL and \
         MariaDB GTIDs): upgrade the server or use a supported one"
    )]
    Version {
        /// The value found.
        found: String,
    },
}

impl ServerSettings {
    /// Reads the settings.
    pub async fn read(conn: &mut MySqlConnection) -> Result<Self, MariaDbError> {
        let (log_bin, format, image, meta, compress, version): (
            String,
            String,
            String,
            String,
            String,
            String,
        ) = sqlx::query_as(
            "SELECT CAST(@@log_bin AS CHAR), CAST(@@binlog_format AS CHAR),
                    CAST(@@binlog_row_image AS CHAR), CAST(@@binlog_row_metadata AS CHAR),
                    CAST(@@log_bin_compress AS CHAR), CAST(@@version AS CHAR)",
        )
        .fetch_one(conn)
        .await
        .map_err(MariaDbError::query("read the binlog settings"))?;
        let on = |s: &str| matches!(s.to_ascii_uppercase().as_str(), "1" | "ON");
        Ok(ServerSettings {
            log_bin: on(&log_bin),
            binlog_format: format,
            binlog_row_image: image,
            binlog_row_metadata: meta,
            log_bin_compress: on(&compress),
            version,
        })
    }

    /// The first setting capture cannot work with, if any.
    pub fn verify(&self) -> Result<(), CheckError> {
        if !mariadb_10_5_or_later(&self.version) {
            return Err(CheckError::Version {
                found: self.version.clone(),
            });
        }
        if !self.log_bin {
            return Err(CheckError::LogBin);
        }
        if !self.binlog_format.eq_ignore_ascii_case("ROW") {
            return Err(CheckError::Format {
                found: self.binlog_format.clone(),
            });
        }
        if !self.binlog_row_image.eq_ignore_ascii_case("FULL") {
            return Err(CheckError::RowImage {
                found: self.binlog_row_image.clone(),
            });
        }
        if !self.binlog_row_metadata.eq_ignore_ascii_case("FULL") {
            return Err(CheckError::RowMetadata {
                found: self.binlog_row_metadata.clone(),
            });
        }
        if self.log_bin_compress {
            return Err(CheckError::Compressed);
        }
        Ok(())
    }
}

/// Reads the settings and refuses a server capture cannot work with.
pub async fn check(conn: &mut MySqlConnection) -> Result<ServerSettings, MariaDbError> {
    let s = ServerSettings::read(conn).await?;
    s.verify().map_err(MariaDbError::Check)?;
    Ok(s)
}

/// `10.11.6-MariaDB-log` and the like, from 10.5 on.
fn mariadb_10_5_or_later(version: &str) -> bool {
    if !version.to_ascii_lowercase().contains("mariadb") {
        return false;
    }
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (10, 5),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ServerSettings {
        ServerSettings {
            log_bin: true,
            binlog_format: "ROW".into(),
            binlog_row_image: "FULL".into(),
            binlog_row_metadata: "FULL".into(),
            log_bin_compress: false,
            version: "10.11.6-MariaDB-log".into(),
        }
    }

    #[test]
    fn refusals_name_setting_value_and_fix() {
        assert_eq!(good().verify(), Ok(()));
        let mut s = good();
        s.binlog_format = "STATEMENT".into();
        let msg = s.verify().unwrap_err().to_string();
        assert!(
            msg.starts_with("binlog_format is STATEMENT; meshsync needs ROW"),
            "{msg}"
        );
        assert!(msg.contains("my.cnf"), "{msg}");
        let mut s = good();
        s.binlog_row_metadata = "NO_LOG".into();
        assert!(s.verify().unwrap_err().to_string().contains("NO_LOG"));
        let mut s = good();
        s.version = "8.0.36".into();
        assert!(matches!(s.verify(), Err(CheckError::Version { .. })));
        s.version = "10.4.1-MariaDB".into();
        assert!(matches!(s.verify(), Err(CheckError::Version { .. })));
        s.version = "11.4.2-MariaDB".into();
        assert_eq!(s.verify(), Ok(()));
    }
}
