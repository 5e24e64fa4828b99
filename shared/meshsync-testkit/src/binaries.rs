//! Where the server binaries are. `scripts/setup` installs them; a missing or too old one
//! fails with a message saying so, not with an obscure spawn error.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// Oldest nats-server with the JetStream features meshsync's tests rely on.
const NATS_MIN: (u32, u32) = (2, 11);

/// The repository root (this crate lives in `shared/meshsync-testkit`), where `nats-config/`
/// and `.tools/` are.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// A file in `nats-config/` (read at run time, so the tests run the files compose uses).
pub fn nats_config(file: &str) -> Result<PathBuf> {
    let path = workspace_root().join("nats-config").join(file);
    if !path.is_file() {
        bail!("nats config {} not found", path.display());
    }
    Ok(path)
}

/// nats-server >= 2.11: `MESHSYNC_NATS_SERVER`, else `<root>/.tools/bin/nats-server`, else PATH.
pub fn nats_server() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MESHSYNC_NATS_SERVER") {
        let path = PathBuf::from(path);
        return check_nats(&path)
            .with_context(|| format!("MESHSYNC_NATS_SERVER={}", path.display()));
    }
    let local = workspace_root().join(".tools/bin/nats-server");
    if local.exists() {
        return check_nats(&local);
    }
    match on_path("nats-server") {
        Some(path) => check_nats(&path),
        None => bail!(
            "nats-server not found (MESHSYNC_NATS_SERVER unset, no {}, none on PATH); run scripts/setup",
            local.display()
        ),
    }
}

fn check_nats(path: &Path) -> Result<PathBuf> {
    let out = Command::new(path)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version; run scripts/setup", path.display()))?;
    // "nats-server: v2.15.1"
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
        .unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) if (major, minor) >= NATS_MIN => Ok(path.to_owned()),
        _ => bail!(
            "{} reports {:?}; meshsync needs nats-server {}.{} or later: run scripts/setup",
            path.display(),
            text.trim(),
            NATS_MIN.0,
            NATS_MIN.1
        ),
    }
}

/// PostgreSQL's bin folder: `MESHSYNC_PG_BIN`, else the highest `/usr/lib/postgresql/N/bin`
/// with N >= 15 (logical replication features meshsync uses).
pub fn pg_bin() -> Result<PathBuf> {
    let dir = match std::env::var_os("MESHSYNC_PG_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let newest = std::fs::read_dir("/usr/lib/postgresql")
                .context("PostgreSQL is not installed (no /usr/lib/postgresql); run scripts/setup")?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|v| *v >= 15)
                .max()
                .context("PostgreSQL 15 or later is not installed; run scripts/setup")?;
            PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin"))
        }
    };
    for program in ["initdb", "postgres"] {
        if !dir.join(program).is_file() {
            bail!("{} has no {program}; run scripts/setup", dir.display());
        }
    }
    Ok(dir)
}

/// A MariaDB program (`mariadbd`, `mariadb-install-db`) from PATH, else /usr/sbin or /usr/bin
/// (/usr/sbin is often not on a non-root PATH).
pub fn mariadb(program: &str) -> Result<PathBuf> {
    if let Some(path) = on_path(program) {
        return Ok(path);
    }
    for dir in ["/usr/sbin", "/usr/bin"] {
        let path = Path::new(dir).join(program);
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!(
        "{program} not found on PATH, /usr/sbin or /usr/bin; run scripts/setup (it installs mariadb-server)"
    )
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
