//! Where the server binaries are. `scripts/setup` installs them.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// The repository root (this crate lives in `shared/meshsync-testkit`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// nats-server >= 2.11: `MESHSYNC_NATS_SERVER`, `.tools/bin/nats-server`, or PATH.
pub fn nats_server() -> Result<PathBuf> {
    let candidates = [
        std::env::var_os("MESHSYNC_NATS_SERVER").map(PathBuf::from),
        Some(workspace_root().join(".tools/bin/nats-server")),
        Some(PathBuf::from("nats-server")),
    ];
    for c in candidates.into_iter().flatten() {
        let Ok(out) = std::process::Command::new(&c).arg("--version").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.trim().trim_start_matches("nats-server: v");
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) >= (2, 11) {
            return Ok(c);
        }
    }
    bail!("no nats-server 2.11 or later found; run scripts/setup (it installs one into .tools/)")
}

/// PostgreSQL's bin folder: `MESHSYNC_PG_BIN`, or the highest `/usr/lib/postgresql/N/bin`, N >= 15.
pub fn pg_bin() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MESHSYNC_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed; run scripts/setup")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|v| *v >= 15)
        .collect();
    versions.sort_unstable();
    let v = versions
        .last()
        .context("PostgreSQL 15 or later is not installed; run scripts/setup")?;
    Ok(PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
}

/// A MariaDB program (`mariadbd`, `mariadb-install-db`) from PATH, /usr/sbin or /usr/bin.
pub fn mariadb(name: &str) -> Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{name} not found; run scripts/setup (it installs mariadb-server)")
}
