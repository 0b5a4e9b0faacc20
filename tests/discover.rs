//! `revgate::discover::discover` against documents served on loopback: a provider's
//! discovery document and JWKS become a valid `[[issuer]]` block; unreachable, failing,
//! non-JSON and mismatching providers are one-line errors.

use std::sync::Arc;

use revgate::discover::{discover, DiscoverError, DiscoverOptions, Provider};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One served path: status and body.
type Route = (&'static str, u16, String);

/// Serves the routes `routes(issuer)` builds for its own `http://127.0.0.1:<port>` issuer,
/// one request per connection, until the test's runtime ends. Returns the issuer.
async fn serve(routes: impl FnOnce(&str) -> Vec<Route>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let routes = Arc::new(routes(&issuer));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") && read < buf.len() {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..read]);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = routes
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map(|(_, s, b)| (*s, b.clone()))
                    .unwrap_or((404, "{}".to_string()));
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    issuer
}

/// A discovery document in the shape of panva's oidc-provider.
fn document(issuer: &str, extra: Value) -> String {
    let mut d = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/session/end"),
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "HS256"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        d[k] = v.clone();
    }
    d.to_string()
}

fn test_jwks() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/jwks.json")).unwrap()
}

fn routes(issuer: &str, extra: Value) -> Vec<Route> {
    vec![
        (
            "/.well-known/openid-configuration",
            200,
            document(issuer, extra),
        ),
        ("/jwks", 200, test_jwks()),
    ]
}

fn opts() -> DiscoverOptions {
    DiscoverOptions {
        client_id: Some("client-1".into()),
        audience: Some("https://api.example.test".into()),
    }
}

#[tokio::test]
async fn a_served_provider_becomes_an_issuer_block_check_config_accepts() {
    let issuer = serve(|i| routes(i, json!({}))).await;
    let d = discover(&issuer, &opts()).await.expect("discovers");
    assert_eq!(d.provider, Provider::OidcProvider);
    let text = format!(
        "{}\n[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n",
        d.toml
    );
    let config = revgate::config::Config::parse(&text, |_| None).expect("check-config accepts it");
    let ic = &config.issuers[0];
    assert_eq!(ic.issuer, issuer);
    assert_eq!(
        ic.jwks_url.as_deref(),
        Some(format!("{issuer}/jwks").as_str())
    );
    assert_eq!(
        ic.algorithms,
        ["RS256", "ES256"],
        "advertised and backed by a key"
    );
    assert_eq!(ic.logout_algorithms, ["RS256", "ES256"]);
    assert_eq!(ic.require_typ, "at+jwt");
    assert_eq!(ic.audiences, ["https://api.example.test"]);
    assert_eq!(ic.logout_audiences, ["client-1"]);
    assert!(d.todo[0].contains("/backchannel-logout"), "{:?}", d.todo);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);

    // A trailing slash the operator typed is not a mismatch; the block keeps the exact iss.
    let d = discover(&format!("{issuer}/"), &opts())
        .await
        .expect("discovers");
    assert!(
        d.toml.contains(&format!("issuer = \"{issuer}\"")),
        "{}",
        d.toml
    );
}

#[tokio::test]
async fn an_issuer_that_names_another_url_is_refused() {
    let issuer = serve(|_| {
        vec![(
            "/.well-known/openid-configuration",
            200,
            document("https://elsewhere.example", json!({})),
        )]
    })
    .await;
    let err = discover(&issuer, &opts()).await.unwrap_err();
    assert!(matches!(err, DiscoverError::IssuerMismatch { .. }), "{err}");
    assert!(err.to_string().contains("elsewhere.example"), "{err}");
    assert!(!err.to_string().contains('\n'), "one line: {err}");
}

#[tokio::test]
async fn documents_that_are_not_json_or_fail_are_one_line_errors() {
    let issuer = serve(|i| {
        vec![
            (
                "/.well-known/openid-configuration",
                200,
                document(i, json!({"jwks_uri": format!("{i}/broken")})),
            ),
            ("/broken", 200, "<html>not json</html>".to_string()),
        ]
    })
    .await;
    let err = discover(&issuer, &opts()).await.unwrap_err();
    assert!(matches!(err, DiscoverError::NotJson { .. }), "{err}");
    assert!(err.to_string().contains("/broken"), "{err}");

    let issuer = serve(|_| vec![("/.well-known/openid-configuration", 500, "{}".into())]).await;
    let err = discover(&issuer, &opts()).await.unwrap_err();
    assert!(
        matches!(err, DiscoverError::Status { status: 500, .. }),
        "{err}"
    );

    let issuer = serve(|i| {
        let mut d: Value = serde_json::from_str(&document(i, json!({}))).unwrap();
        d.as_object_mut().unwrap().remove("jwks_uri");
        vec![("/.well-known/openid-configuration", 200, d.to_string())]
    })
    .await;
    let err = discover(&issuer, &opts()).await.unwrap_err();
    assert!(matches!(err, DiscoverError::NoJwksUri(_)), "{err}");
}

#[tokio::test]
async fn an_unreachable_provider_is_a_one_line_error() {
    // A port that was free a moment ago: nothing listens there now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = discover(&format!("http://127.0.0.1:{port}"), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoverError::Unreachable { .. }), "{err}");
    assert!(!err.to_string().contains('\n'), "{err}");
    let err = discover("ftp://idp.example", &opts()).await.unwrap_err();
    assert!(matches!(err, DiscoverError::BadUrl(_)), "{err}");
}
