//! Loading a certificate chain and key from PEM files into a rustls configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS configuration could not be built; each names the file at fault.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file is missing, unreadable, or holds no certificate.
    Certificate(PathBuf, String),
    /// The key file is missing, unreadable, or holds no private key.
    Key(PathBuf, String),
    /// The key does not belong to the certificate, or rustls refused the pair.
    Mismatch(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(p, e) => {
                write!(f, "cannot use certificate file {}: {e}", p.display())
            }
            Self::Key(p, e) => write!(f, "cannot use key file {}: {e}", p.display()),
            Self::Mismatch(e) => write!(f, "certificate and key do not form a usable pair: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// A server configuration (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`) from PEM files,
/// for [`TransportOptions::tls`](crate::TransportOptions::tls).
///
/// ```
/// use std::path::Path;
/// use quick_server::{load_tls, TlsError};
///
/// match load_tls(Path::new("missing-cert.pem"), Path::new("missing-key.pem")) {
///     Err(TlsError::Certificate(path, _)) => assert_eq!(path, Path::new("missing-cert.pem")),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect())
        .map_err(|e| TlsError::Certificate(cert.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate(
            cert.to_owned(),
            "no certificate found".into(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key(key.to_owned(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
