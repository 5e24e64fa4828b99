//! Configuration of one peer agent (one database), read from TOML.
//!
//! Unknown keys are rejected (a typo fails at start, not silently), every field is documented,
//! and [`Config::validate`] checks everything it can without I/O; its errors name the field
//! and the fix. Secrets (database URLs may hold passwords) never show in `Debug` output.

mod env;
mod model;
mod secret;
mod validate;

use std::path::Path;

pub use model::{
    ClockConfig, Config, DEFAULT_TOMBSTONE_RETENTION_S, DatabaseConfig, Engine, MergeConfig,
    NatsConfig, PeerConfig, TableMerge,
};
pub use secret::Secret;
pub use validate::Invalid;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a key that does not exist, or a value of the wrong type.
    #[error("config file {path} is not valid")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// Well-formed, but a value breaks a rule.
    #[error("config file {path}: {source}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, the problem and the fix.
        #[source]
        source: Invalid,
    },
}

impl Config {
    /// Reads, parses and validates a config file, with `MESHSYNC__SECTION__KEY` environment
    /// variables overriding its values (e.g. `MESHSYNC__DATABASE__URL` keeps a password out of
    /// the file).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let text = env::apply(&text, std::env::vars()).map_err(|source| ConfigError::Parse {
            path: shown.clone(),
            source,
        })?;
        Config::from_toml(&text, &shown)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_owned(),
            source,
        })?;
        config.validate().map_err(|source| ConfigError::Invalid {
            path: origin.to_owned(),
            source,
        })?;
        Ok(config)
    }
}
