//! Start-up check: the server must write a binlog meshsync can capture from. Each refusal
//! names the setting, the value found and the fix.

use sqlx::MySqlConnection;

use crate::{
    error::MariaDbError,
    flavour::{self, Flavour},
};

/// The server settings capture depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// MariaDB or MySQL (from the version and `@@version_comment`).
    pub flavour: Flavour,
    /// `@@log_bin`: the binlog is written.
    pub log_bin: bool,
    /// `@@binlog_format` (`ROW` needed).
    pub binlog_format: String,
    /// `@@binlog_row_image` (`FULL` needed).
    pub binlog_row_image: String,
    /// `@@binlog_row_metadata` (`FULL` needed: column names, signedness, ENUM/SET labels).
    pub binlog_row_metadata: String,
    /// `@@log_bin_compress` (MariaDB; must be off: compressed events do not decode). Always
    /// false on MySQL, whose `binlog_transaction_compression` capture reads.
    pub log_bin_compress: bool,
    /// `@@gtid_mode` (MySQL; `ON` needed: capture resumes from GTID sets). Empty on MariaDB.
    pub gtid_mode: String,
    /// `@@enforce_gtid_consistency` (MySQL; `ON` needed). Empty on MariaDB.
    pub enforce_gtid_consistency: String,
    /// `@@binlog_row_value_options` (MySQL; must be empty: `PARTIAL_JSON` logs JSON updates
    /// as diffs against a before-image meshsync does not have). Empty on MariaDB.
    pub binlog_row_value_options: String,
    /// `@@version`, e.g. `10.11.6-MariaDB-log` or `8.0.36`.
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
    /// MariaDB older than 10.5.
    #[error(
        "version is {found}; meshsync needs MariaDB 10.5 or later (binlog_row_metadata=FULL and \
         MariaDB GTIDs): upgrade the server or use a supported one"
    )]
    Version {
        /// The value found.
        found: String,
    },
    /// MySQL older than 8.0.
    #[error(
        "version is {found}; meshsync needs MySQL 8.0 or later (binlog_row_metadata=FULL and \
         original commit timestamps): upgrade the server or use a supported one"
    )]
    MySqlVersion {
        /// The value found.
        found: String,
    },
    /// MySQL without GTIDs (or still migrating to them).
    #[error(
        "gtid_mode is {found}; meshsync needs ON (capture resumes from GTID sets): set \
         gtid_mode=ON and enforce_gtid_consistency=ON in my.cnf [mysqld] and restart (or step \
         gtid_mode up online: OFF_PERMISSIVE, ON_PERMISSIVE, ON)"
    )]
    GtidMode {
        /// The value found.
        found: String,
    },
    /// MySQL allowing statements GTIDs cannot describe.
    #[error(
        "enforce_gtid_consistency is {found}; meshsync needs ON (required by gtid_mode=ON): set \
         enforce_gtid_consistency=ON in my.cnf [mysqld] and restart"
    )]
    GtidConsistency {
        /// The value found.
        found: String,
    },
    /// MySQL logging JSON updates as partial diffs.
    #[error(
        "binlog_row_value_options is {found}; meshsync needs it empty (PARTIAL_JSON logs JSON \
         updates as diffs meshsync cannot apply): set binlog_row_value_options='' in my.cnf \
         [mysqld] and restart"
    )]
    RowValueOptions {
        /// The value found.
        found: String,
    },
    /// MySQL without GTIDs: an ANONYMOUS_GTID event reached capture.
    #[error(
        "the binlog holds anonymous transactions (gtid_mode is not ON); meshsync needs \
         gtid_mode=ON: set gtid_mode=ON and enforce_gtid_consistency=ON in my.cnf [mysqld] and \
         restart"
    )]
    AnonymousGtid,
}

/// `ON`, `1` and the like.
fn on(s: &str) -> bool {
    matches!(s.to_ascii_uppercase().as_str(), "1" | "ON")
}

impl ServerSettings {
    /// Reads the settings.
    pub async fn read(conn: &mut MySqlConnection) -> Result<Self, MariaDbError> {
        let (version, comment) = flavour::version_and_comment(conn).await?;
        match Flavour::from_version(&version, &comment) {
            Flavour::MariaDb => Self::read_mariadb(conn, version).await,
            Flavour::MySql => Self::read_mysql(conn, version).await,
        }
    }

    /// Reads a MariaDB server's settings.
    async fn read_mariadb(
        conn: &mut MySqlConnection,
        version: String,
    ) -> Result<Self, MariaDbError> {
        let (log_bin, format, image, meta, compress): (String, String, String, String, String) =
            sqlx::query_as(
                "SELECT CAST(@@log_bin AS CHAR), CAST(@@binlog_format AS CHAR),
                    CAST(@@binlog_row_image AS CHAR), CAST(@@binlog_row_metadata AS CHAR),
                    CAST(@@log_bin_compress AS CHAR)",
            )
            .fetch_one(conn)
            .await
            .map_err(MariaDbError::query("read the binlog settings"))?;
        Ok(ServerSettings {
            flavour: Flavour::MariaDb,
            log_bin: on(&log_bin),
            binlog_format: format,
            binlog_row_image: image,
            binlog_row_metadata: meta,
            log_bin_compress: on(&compress),
            gtid_mode: String::new(),
            enforce_gtid_consistency: String::new(),
            binlog_row_value_options: String::new(),
            version,
        })
    }

    /// Reads a MySQL server's settings. Before 8.0 some of them do not exist, so only the
    /// version is kept (and [`ServerSettings::verify`] refuses it).
    async fn read_mysql(conn: &mut MySqlConnection, version: String) -> Result<Self, MariaDbError> {
        let mut s = ServerSettings {
            flavour: Flavour::MySql,
            log_bin: false,
            binlog_format: String::new(),
            binlog_row_image: String::new(),
            binlog_row_metadata: String::new(),
            log_bin_compress: false,
            gtid_mode: String::new(),
            enforce_gtid_consistency: String::new(),
            binlog_row_value_options: String::new(),
            version,
        };
        if !mysql_8_or_later(&s.version) {
            return Ok(s);
        }
        type Row = (String, String, String, String, String, String, String);
        let row: Row = sqlx::query_as(
            "SELECT CAST(@@log_bin AS CHAR), CAST(@@binlog_format AS CHAR),
                    CAST(@@binlog_row_image AS CHAR), CAST(@@binlog_row_metadata AS CHAR),
                    CAST(@@gtid_mode AS CHAR), CAST(@@enforce_gtid_consistency AS CHAR),
                    CAST(@@binlog_row_value_options AS CHAR)",
        )
        .fetch_one(conn)
        .await
        .map_err(MariaDbError::query("read the binlog settings"))?;
        (
            s.binlog_format,
            s.binlog_row_image,
            s.binlog_row_metadata,
            s.gtid_mode,
            s.enforce_gtid_consistency,
            s.binlog_row_value_options,
        ) = (row.1, row.2, row.3, row.4, row.5, row.6);
        s.log_bin = on(&row.0);
        Ok(s)
    }

    /// The first setting capture cannot work with, if any.
    pub fn verify(&self) -> Result<(), CheckError> {
        match self.flavour {
            Flavour::MariaDb if !mariadb_10_5_or_later(&self.version) => {
                return Err(CheckError::Version {
                    found: self.version.clone(),
                });
            }
            Flavour::MySql if !mysql_8_or_later(&self.version) => {
                return Err(CheckError::MySqlVersion {
                    found: self.version.clone(),
                });
            }
            _ => {}
        }
        if !self.log_bin {
            return Err(CheckError::LogBin);
        }
        if self.flavour == Flavour::MySql {
            if !self.gtid_mode.eq_ignore_ascii_case("ON") {
                return Err(CheckError::GtidMode {
                    found: self.gtid_mode.clone(),
                });
            }
            if !on(&self.enforce_gtid_consistency) {
                return Err(CheckError::GtidConsistency {
                    found: self.enforce_gtid_consistency.clone(),
                });
            }
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
        if !self.binlog_row_value_options.trim().is_empty() {
            return Err(CheckError::RowValueOptions {
                found: self.binlog_row_value_options.clone(),
            });
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
    version.to_ascii_lowercase().contains("mariadb")
        && flavour::major_minor(version).is_some_and(|v| v >= (10, 5))
}

/// `8.0.36`, `8.4.0`, `9.1.0` and the like.
fn mysql_8_or_later(version: &str) -> bool {
    flavour::major_minor(version).is_some_and(|(major, _)| major >= 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ServerSettings {
        ServerSettings {
            flavour: Flavour::MariaDb,
            log_bin: true,
            binlog_format: "ROW".into(),
            binlog_row_image: "FULL".into(),
            binlog_row_metadata: "FULL".into(),
            log_bin_compress: false,
            gtid_mode: String::new(),
            enforce_gtid_consistency: String::new(),
            binlog_row_value_options: String::new(),
            version: "10.11.6-MariaDB-log".into(),
        }
    }

    fn good_mysql() -> ServerSettings {
        ServerSettings {
            flavour: Flavour::MySql,
            gtid_mode: "ON".into(),
            enforce_gtid_consistency: "ON".into(),
            version: "8.0.36".into(),
            ..good()
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

    #[test]
    fn mysql_refusals_name_setting_value_and_fix() {
        assert_eq!(good_mysql().verify(), Ok(()));
        type Spoil = fn(&mut ServerSettings);
        let cases: [(Spoil, &str); 7] = [
            (
                |s| s.version = "5.7.44-log".into(),
                "version is 5.7.44-log; meshsync needs MySQL 8.0",
            ),
            (|s| s.log_bin = false, "log_bin is OFF"),
            (
                |s| s.gtid_mode = "OFF_PERMISSIVE".into(),
                "gtid_mode is OFF_PERMISSIVE; meshsync needs ON",
            ),
            (
                |s| s.enforce_gtid_consistency = "WARN".into(),
                "enforce_gtid_consistency is WARN",
            ),
            (
                |s| s.binlog_row_image = "MINIMAL".into(),
                "binlog_row_image is MINIMAL",
            ),
            (
                |s| s.binlog_row_metadata = "MINIMAL".into(),
                "binlog_row_metadata is MINIMAL",
            ),
            (
                |s| s.binlog_row_value_options = "PARTIAL_JSON".into(),
                "binlog_row_value_options is PARTIAL_JSON",
            ),
        ];
        for (spoil, want) in cases {
            let mut s = good_mysql();
            spoil(&mut s);
            let msg = s.verify().unwrap_err().to_string();
            assert!(msg.starts_with(want), "{msg}");
            assert!(msg.contains("my.cnf") || msg.contains("upgrade"), "{msg}");
        }
        // 9.x is a MySQL after 8.0.
        let mut s = good_mysql();
        s.version = "9.1.0".into();
        assert_eq!(s.verify(), Ok(()));
    }
}
