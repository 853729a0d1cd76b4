//! The HTTPS listener's certificate (the accept loop is `aims_authn::transport::serve_tls`).
//!
//! The bundle endpoint uses the SPIFFE `https_web` profile (SPIFFE Federation §5.2.1): ordinary
//! Web PKI server authentication. An operator configures a real certificate; without one,
//! AIMS makes a small local CA and a certificate for localhost in the data directory, and
//! advertises the CA file in `up.json` so local clients can trust it.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::error::ServerError;

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
    aims_core::files::write_atomic(path, contents, mode)
        .map_err(|e| ServerError::io(format!("write {}", path.display()), e))
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
