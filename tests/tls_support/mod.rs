//! Helpers for the tests of the TLS proxy listener: certificates generated at test time
//! (rcgen), real TLS clients (rustls) that report what was negotiated, and real HTTP/2 and
//! HTTP/1.1 clients (hyper) over them. Every wait is bounded by `common::WAIT`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use crate::common::WAIT;

/// A self-signed certificate for `localhost` and `127.0.0.1`, with its key, as PEM.
pub struct TestCert {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM private key (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
}

impl TestCert {
    /// A new certificate and key (an EC P-256 key, rcgen's default).
    pub fn new() -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("generate a test certificate");
        TestCert {
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
            der: made.cert.der().clone(),
        }
    }

    /// Writes `dir/NAME.crt` and `dir/NAME.key`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// The `[server]` lines that turn TLS on with these files.
pub fn tls_lines(cert: &Path, key: &Path) -> String {
    format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    )
}

/// A rustls client trusting `roots` only, offering `alpn`, limited to `versions`.
pub fn client_config(
    roots: &[&TestCert],
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.der.clone()).expect("test root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` (server name `localhost`) with `config`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    tokio::time::timeout(
        WAIT,
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("TLS handshake within the bound")
}

/// A TLS 1.2/1.3 connection trusting `root`, offering `alpn`.
pub async fn connect(addr: SocketAddr, root: &TestCert, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    tls_connect(addr, client_config(&[root], alpn, &versions))
        .await
        .expect("TLS connection to the gateway")
}

/// The protocol ALPN picked on `stream`.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// The server's end-entity certificate on `stream`.
pub fn peer_cert(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificates")[0]
        .clone()
}

/// Which HTTP a [`Client`] speaks.
pub enum Sender {
    /// HTTP/2 (ALPN `h2`).
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    /// HTTP/1.1 (ALPN `http/1.1`).
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
}

/// A real HTTP client on one TLS connection to the gateway.
pub struct Client {
    /// The sender.
    pub sender: Sender,
    /// The gateway's address (the request authority).
    pub addr: SocketAddr,
    /// The protocol ALPN picked.
    pub alpn: Option<Vec<u8>>,
    /// The certificate the gateway presented.
    pub cert: CertificateDer<'static>,
}

/// An answer read whole.
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
    /// HTTP version of the answer.
    pub version: http::Version,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

impl Client {
    /// An HTTP/2 client (offers only `h2`).
    pub async fn h2(addr: SocketAddr, root: &TestCert) -> Client {
        let stream = connect(addr, root, &[b"h2"]).await;
        let (alpn, cert) = (alpn(&stream), peer_cert(&stream));
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        Client {
            sender: Sender::H2(sender),
            addr,
            alpn,
            cert,
        }
    }

    /// An HTTP/1.1 client (offers only `http/1.1`).
    pub async fn h1(addr: SocketAddr, root: &TestCert) -> Client {
        let stream = connect(addr, root, &[b"http/1.1"]).await;
        let (alpn, cert) = (alpn(&stream), peer_cert(&stream));
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        Client {
            sender: Sender::H1(sender),
            addr,
            alpn,
            cert,
        }
    }

    /// Sends `method path` with `headers` and `body`; the answer read whole.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, hyper::Error> {
        let mut req = http::Request::builder().method(method);
        req = match self.sender {
            Sender::H2(_) => req.uri(format!("https://localhost:{}{path}", self.addr.port())),
            Sender::H1(_) => req
                .uri(path)
                .header("host", format!("localhost:{}", self.addr.port())),
        };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).expect("request");
        let resp = tokio::time::timeout(WAIT, async {
            match &mut self.sender {
                Sender::H2(s) => s.send_request(req).await,
                Sender::H1(s) => {
                    s.ready().await?;
                    s.send_request(req).await
                }
            }
        })
        .await
        .expect("answer within the bound")?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(WAIT, body.collect())
            .await
            .expect("body within the bound")?
            .to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            version: parts.version,
        })
    }

    /// `GET path` with a bearer token.
    pub async fn get(&mut self, path: &str, token: &str) -> Answer {
        let auth = format!("Bearer {token}");
        self.send("GET", path, &[("authorization", &auth)], Bytes::new())
            .await
            .expect("request")
    }
}
