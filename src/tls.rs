//! TLS on the proxy listener (SPEC §4): with `server.tls_cert` and `server.tls_key` set,
//! `listen` accepts only TLS 1.2 and 1.3 (rustls with the aws-lc-rs provider; no OpenSSL),
//! offering `h2` and `http/1.1` by ALPN.
//!
//! The certificate and key are read by [`load`] — at start-up, by `check-config` and by
//! every reload — and a bad file, a key that does not match the certificate, or a key type
//! the provider cannot sign with is refused with the file named. The listener's rustls
//! configuration is built once ([`server_config`]) around [`Certificates`], which resolves
//! every handshake to the pair in force: a reload swaps the pair, so connections already
//! open keep theirs and new ones get the new certificate. Nothing is dropped.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// A client must complete its TLS handshake within this time (the slow-loris defence of
/// the header read timeout, one step earlier).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest accepted `tls_cert` or `tls_key` file: a chain of a few certificates is a few
/// KiB; anything bigger is not a PEM chain.
pub const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// The certificate chain and key in force, shared by the listener's rustls configuration
/// and the reload that replaces them.
#[derive(Debug, Default)]
pub struct Certificates {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl Certificates {
    /// Puts `pair` in force for the next handshakes.
    pub fn set(&self, pair: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(pair);
    }

    /// The pair in force (none before the first [`set`](Self::set)).
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// The crypto provider of the listener (and of [`load`]'s key checks).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The listener's rustls configuration: TLS 1.3 and 1.2 only, no client certificates,
/// ALPN `h2` then `http/1.1`, the certificate from `certs` at each handshake.
pub fn server_config(certs: Arc<Certificates>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Arc::new(config)
}

/// Reads `server.tls_cert` and `server.tls_key` when both are set (`None` when TLS is off):
/// a PEM chain with the end-entity certificate first, and a PEM private key (PKCS#8, or
/// the PKCS#1 / SEC1 encodings ACME clients such as lego write) that matches it. The error
/// is one line naming the key and the file.
pub fn load(server: &crate::config::ServerConfig) -> Result<Option<Arc<CertifiedKey>>, String> {
    if !server.tls_enabled() {
        return Ok(None);
    }
    load_pair(&server.tls_cert, &server.tls_key).map(Some)
}

fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, String> {
    let cert_text = read_pem("server.tls_cert", cert_path)?;
    let key_text = read_pem("server.tls_key", key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_text)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "server.tls_cert: {} is not a PEM certificate chain: {e}",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "server.tls_cert: {} holds no certificate (expected \"-----BEGIN CERTIFICATE-----\")",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_text).map_err(|e| {
        format!(
            "server.tls_key: {} holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC): {e}",
            key_path.display()
        )
    })?;
    let pair = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "server.tls_key: {} does not match the certificate of server.tls_cert {}",
            key_path.display(),
            cert_path.display()
        ),
        rustls::Error::General(_) => format!(
            "server.tls_key: {}: unsupported private key (RSA, ECDSA P-256/P-384 or Ed25519): {e}",
            key_path.display()
        ),
        other => format!(
            "server.tls_cert: {}: the first certificate does not parse: {other}",
            cert_path.display()
        ),
    })?;
    Ok(Arc::new(pair))
}

/// The bytes of the PEM file `path` (the value of `key`), bounded by
/// [`MAX_PEM_FILE_BYTES`].
fn read_pem(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(format!(
            "{key}: {} is larger than {MAX_PEM_FILE_BYTES} bytes: not a PEM file",
            path.display()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn pair(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_loads_and_a_mismatched_one_names_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_a, key_a) = pair("a.example");
        let (_, key_b) = pair("b.example");
        let cert = write(dir.path(), "a.crt", &cert_a);
        let key = write(dir.path(), "a.key", &key_a);
        let other = write(dir.path(), "b.key", &key_b);
        let loaded = load_pair(&cert, &key).unwrap();
        assert_eq!(loaded.cert.len(), 1);

        let e = load_pair(&cert, &other).map(|_| ()).unwrap_err();
        assert!(e.starts_with("server.tls_key: "), "{e}");
        assert!(
            e.contains("b.key") && e.contains("does not match") && e.contains("a.crt"),
            "{e}"
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_key_and_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_a, key_a) = pair("a.example");
        let cert = write(dir.path(), "a.crt", &cert_a);
        let key = write(dir.path(), "a.key", &key_a);
        let garbage = write(dir.path(), "garbage.pem", "not pem at all\n");
        let missing = dir.path().join("missing.pem");

        let e = load_pair(&garbage, &key).map(|_| ()).unwrap_err();
        assert!(
            e.starts_with("server.tls_cert: ") && e.contains("garbage.pem"),
            "{e}"
        );
        let e = load_pair(&cert, &garbage).map(|_| ()).unwrap_err();
        assert!(
            e.starts_with("server.tls_key: ") && e.contains("garbage.pem"),
            "{e}"
        );
        let e = load_pair(&missing, &key).map(|_| ()).unwrap_err();
        assert!(
            e.starts_with("server.tls_cert: cannot read ") && e.contains("missing.pem"),
            "{e}"
        );
        // The key where the certificate belongs and vice versa.
        let e = load_pair(&key, &cert).map(|_| ()).unwrap_err();
        assert!(
            e.starts_with("server.tls_cert: ") && e.contains("a.key"),
            "{e}"
        );
    }

    #[test]
    fn sec1_and_pkcs1_keys_load_as_acme_clients_write_them() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/tls");
        for name in ["ec-sec1", "rsa-pkcs1"] {
            let cert = dir.join(format!("{name}.crt"));
            let key = dir.join(format!("{name}.key"));
            load_pair(&cert, &key).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // Each key with the other's certificate: a mismatch, not a parse error.
        let e = load_pair(&dir.join("ec-sec1.crt"), &dir.join("rsa-pkcs1.key"))
            .map(|_| ())
            .unwrap_err();
        assert!(e.contains("does not match"), "{e}");
    }

    #[test]
    fn the_listener_offers_h2_and_http11_over_tls12_and_13_only() {
        let certs = Arc::new(Certificates::default());
        let config = server_config(certs);
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
