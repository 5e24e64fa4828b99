//! Throwaway certificates for servers that require TLS: one CA per server, a server
//! certificate for the name `localhost` only (so that `verify-full` through `127.0.0.1`
//! fails, as it must), and a client certificate for [`CERT_USER`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The role a TLS server authenticates by client certificate only (`cert` in pg_hba.conf).
pub const CERT_USER: &str = "cert_user";

/// The certificate files of one TLS server, in its folder.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA's certificate: `sslrootcert` for clients, `ssl_ca_file` for the server.
    pub ca: PathBuf,
    /// The server's certificate (`localhost`).
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate whose common name is [`CERT_USER`].
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// Generates the CA and both certificates into `dir`; keys are readable by their owner
    /// only, as PostgreSQL and libpq insist.
    pub fn generate(dir: &Path) -> Result<TlsFiles> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "meshsync test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = server.signed_by(&server_key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .distinguished_name
            .push(DnType::CommonName, CERT_USER);
        let client_cert = client.signed_by(&client_key, &issuer)?;

        let files = TlsFiles {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        write(&files.ca, &ca_cert.pem(), 0o644)?;
        write(&files.server_cert, &server_cert.pem(), 0o644)?;
        write(&files.server_key, &server_key.serialize_pem(), 0o600)?;
        write(&files.client_cert, &client_cert.pem(), 0o644)?;
        write(&files.client_key, &client_key.serialize_pem(), 0o600)?;
        Ok(files)
    }

    /// Hands the server's files to `uid:gid` (the user PostgreSQL runs as).
    pub fn chown_server_files(&self, uid: u32, gid: u32) -> Result<()> {
        for path in [&self.ca, &self.server_cert, &self.server_key] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    }
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}
