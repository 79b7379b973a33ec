//! TLS configurations: from PEM files, or from a certificate made at start for the
//! addresses a local client uses.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

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
    /// A self-signed certificate could not be made.
    Generate(String),
    /// The folder caching a self-signed certificate could not be written.
    Cache(PathBuf, String),
    /// A CA file for proxy upstreams is missing, unreadable, or holds no valid
    /// certificate.
    Ca(PathBuf, String),
    /// rustls refused the client configuration of proxy upstreams.
    Client(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(p, e) => {
                write!(f, "cannot use certificate file {}: {e}", p.display())
            }
            Self::Key(p, e) => write!(f, "cannot use key file {}: {e}", p.display()),
            Self::Mismatch(e) => write!(f, "certificate and key do not form a usable pair: {e}"),
            Self::Generate(e) => write!(f, "cannot make a self-signed certificate: {e}"),
            Self::Cache(p, e) => {
                write!(f, "cannot cache the certificate in {}: {e}", p.display())
            }
            Self::Ca(p, e) => write!(f, "cannot use proxy CA file {}: {e}", p.display()),
            Self::Client(e) => write!(f, "cannot set up TLS for proxy upstreams: {e}"),
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
    let (certs, key) = read_pem(cert, key)?;
    server_config(certs, key)
}

/// The certificate and key in two PEM files.
fn read_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
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
    Ok((certs, key_der))
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client configuration of `https://` proxy upstreams: the system roots (through
/// `rustls-native-certs`, which reads the platform's store and honours `SSL_CERT_FILE`)
/// plus every CA in the PEM files `cas`, which must all be readable and valid.
pub(crate) fn upstream_config(cas: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: verification then fails with rustls's
    // reason in the log, per request.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    for file in cas {
        let bad = |e: String| TlsError::Ca(file.clone(), e);
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .and_then(|iter| iter.collect())
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate found".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The files of a cached self-signed certificate inside its folder.
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";
/// The names the cached certificate was made for, one a line: a change makes a new one.
const NAMES_FILE: &str = "names";

/// A certificate made at start, what a client needs to trust it, and its configuration.
pub(crate) struct SelfSigned {
    pub(crate) config: Arc<rustls::ServerConfig>,
    /// The names and addresses it is valid for.
    pub(crate) names: Vec<String>,
    /// SHA-256 of the DER certificate, as colon-separated hex pairs (`openssl x509
    /// -fingerprint -sha256` prints the same).
    pub(crate) fingerprint: String,
    /// The PEM certificate, when it is cached in a folder.
    pub(crate) cert_file: Option<PathBuf>,
}

/// Makes (or, from `cache`, reuses) a certificate for `localhost`, `127.0.0.1`, `::1` and
/// `bound` when it is a specific address.
pub(crate) fn self_signed(bound: IpAddr, cache: Option<&Path>) -> Result<SelfSigned, TlsError> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    // An unspecified address (`0.0.0.0`, `::`) names no host a client could dial.
    if !bound.is_unspecified() && !names.contains(&bound.to_string()) {
        names.push(bound.to_string());
    }
    let (cert, key) = match cache {
        Some(folder) => cached(folder, &names)?,
        None => der(&generate(&names)?),
    };
    let fingerprint = fingerprint(&cert);
    Ok(SelfSigned {
        config: server_config(vec![cert], key)?,
        names,
        fingerprint,
        cert_file: cache.map(|folder| folder.join(CERT_FILE)),
    })
}

fn generate(names: &[String]) -> Result<rcgen::CertifiedKey, TlsError> {
    rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))
}

fn der(made: &rcgen::CertifiedKey) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = PrivatePkcs8KeyDer::from(made.key_pair.serialize_der());
    (made.cert.der().clone(), key.into())
}

/// The certificate in `folder` when it was made for `names`, else a new one written there.
fn cached(
    folder: &Path,
    names: &[String],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let (cert_file, key_file) = (folder.join(CERT_FILE), folder.join(KEY_FILE));
    let made_for = fs::read_to_string(folder.join(NAMES_FILE)).unwrap_or_default();
    if made_for.lines().eq(names.iter().map(String::as_str)) {
        if let Ok((mut certs, key)) = read_pem(&cert_file, &key_file) {
            return Ok((certs.swap_remove(0), key));
        }
    }
    let made = generate(names)?;
    let cache_error = |e: std::io::Error| TlsError::Cache(folder.to_owned(), e.to_string());
    fs::create_dir_all(folder).map_err(cache_error)?;
    write_private(&key_file, made.key_pair.serialize_pem().as_bytes()).map_err(cache_error)?;
    fs::write(&cert_file, made.cert.pem()).map_err(cache_error)?;
    fs::write(folder.join(NAMES_FILE), names.join("\n") + "\n").map_err(cache_error)?;
    Ok(der(&made))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents)
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}
