//! The HTTPS listener: its certificate and the accept loop.
//!
//! The bundle endpoint uses the SPIFFE `https_web` profile (SPIFFE Federation §5.2.1): ordinary
//! Web PKI server authentication. An operator configures a real certificate; without one,
//! AIMS makes a small local CA and a certificate for localhost in the data directory, and
//! advertises the CA file in `up.json` so local clients can trust it.

use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::error::ServerError;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Who is on the other end of a connection; inserted into every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote: SocketAddr,
    /// The certificates the client presented, if the listener asked for them (mTLS).
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// The files of the locally made Web PKI.
#[derive(Debug, Clone)]
pub struct LocalWebPki {
    /// The local CA certificate clients should trust.
    pub ca_file: PathBuf,
    /// The server certificate.
    pub cert_file: PathBuf,
    /// The server key (0600).
    pub key_file: PathBuf,
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), ServerError> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| ServerError::io(format!("write {}", tmp.display()), e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| ServerError::io(format!("write {}", tmp.display()), e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ServerError::io(format!("chmod {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| ServerError::io(format!("rename {}", path.display()), e))
}

impl LocalWebPki {
    /// Loads the local Web PKI from `dir`, creating it (or renewing a server certificate that
    /// expires within 30 days) as needed. `hosts` become the certificate's DNS/IP SANs.
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Self, ServerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ServerError::io(format!("create {}", dir.display()), e))?;
        let pki = Self {
            ca_file: dir.join("web-ca.pem"),
            cert_file: dir.join("web-server.pem"),
            key_file: dir.join("web-server.key"),
        };
        let ca_key_file = dir.join("web-ca.key");
        let ca_key = if pki.ca_file.exists() && ca_key_file.exists() {
            let pem = std::fs::read_to_string(&ca_key_file)
                .map_err(|e| ServerError::io(format!("read {}", ca_key_file.display()), e))?;
            KeyPair::from_pem(&pem).map_err(|e| ServerError::Tls(format!("local CA key: {e}")))?
        } else {
            let key = KeyPair::generate().map_err(|e| ServerError::Tls(e.to_string()))?;
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::OrganizationName, "AIMS");
            params
                .distinguished_name
                .push(DnType::CommonName, "AIMS local web CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::hours(1);
            params.not_after = now + time::Duration::days(3650);
            let cert = params
                .self_signed(&key)
                .map_err(|e| ServerError::Tls(e.to_string()))?;
            write_file(&ca_key_file, key.serialize_pem().as_bytes(), 0o600)?;
            write_file(&pki.ca_file, cert.pem().as_bytes(), 0o644)?;
            let _ = std::fs::remove_file(&pki.cert_file);
            key
        };
        if !pki.server_cert_is_fresh(hosts) {
            let ca_pem = std::fs::read_to_string(&pki.ca_file)
                .map_err(|e| ServerError::io(format!("read {}", pki.ca_file.display()), e))?;
            let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)
                .map_err(|e| ServerError::Tls(format!("local CA: {e}")))?;
            let key = KeyPair::generate().map_err(|e| ServerError::Tls(e.to_string()))?;
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, "AIMS server");
            params.subject_alt_names = hosts
                .iter()
                .map(|h| match h.parse::<std::net::IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => h.as_str().try_into().map(SanType::DnsName),
                })
                .collect::<Result<_, _>>()
                .map_err(|e| ServerError::Config(format!("host name for TLS: {e}")))?;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::hours(1);
            params.not_after = now + time::Duration::days(90);
            let cert = params
                .signed_by(&key, &issuer)
                .map_err(|e| ServerError::Tls(e.to_string()))?;
            write_file(&pki.key_file, key.serialize_pem().as_bytes(), 0o600)?;
            write_file(&pki.cert_file, cert.pem().as_bytes(), 0o644)?;
        }
        Ok(pki)
    }

    fn server_cert_is_fresh(&self, hosts: &[String]) -> bool {
        let Ok(pem) = std::fs::read(&self.cert_file) else {
            return false;
        };
        let Ok(der) = CertificateDer::from_pem_slice(&pem) else {
            return false;
        };
        let Ok((not_after, names)) = x509_parser_lite(&der) else {
            return false;
        };
        let remaining = not_after - time::OffsetDateTime::now_utc().unix_timestamp();
        remaining > 30 * 86400 && hosts.iter().all(|h| names.contains(h))
    }
}

/// (notAfter, SAN strings) of a certificate.
fn x509_parser_lite(der: &[u8]) -> Result<(i64, Vec<String>), ()> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| ())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push((*d).to_owned()),
                GeneralName::IPAddress(ip) => {
                    let s =
                        match ip.len() {
                            4 => <[u8; 4]>::try_from(*ip)
                                .map(|b| std::net::IpAddr::from(b).to_string()),
                            16 => <[u8; 16]>::try_from(*ip)
                                .map(|b| std::net::IpAddr::from(b).to_string()),
                            _ => continue,
                        };
                    if let Ok(s) = s {
                        names.push(s);
                    }
                }
                _ => {}
            }
        }
    }
    Ok((cert.validity().not_after.timestamp(), names))
}

/// A rustls server configuration from PEM files (no client authentication).
pub fn server_config_from_files(
    cert_file: &Path,
    key_file: &Path,
) -> Result<ServerConfig, ServerError> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no certificate",
            cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key_file.display())))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServerError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `router` over TLS on `listener` until `shutdown` fires, then drains open connections
/// for up to five seconds. Each request carries a [`ConnectionInfo`].
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let info = ConnectionInfo {
                remote,
                peer_certificates: stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
            };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(info.clone());
                router.clone().oneshot(req.map(Body::new))
            });
            let conn = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some HTTPS connections did not finish within the drain timeout");
    }
}
