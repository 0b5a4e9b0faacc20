//! Requests to the proxy listener of a running gateway and the checks on its answers
//! (SPEC §4). Every helper takes a [`ProxyTarget`]: a `&Gateway`, a `&ServeChild` or a
//! bare `SocketAddr` alike.

use std::net::SocketAddr;

use serde_json::Value;

use super::child::ServeChild;
use super::gateway::Gateway;
use super::http::{form, get_with, post_form, status_json};

/// Something with a proxy listener.
pub trait ProxyTarget {
    /// The proxy listener's address.
    fn proxy_addr(&self) -> SocketAddr;

    /// `http://proxy` + `path`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy_addr())
    }
}

impl ProxyTarget for SocketAddr {
    fn proxy_addr(&self) -> SocketAddr {
        *self
    }
}

impl ProxyTarget for Gateway {
    fn proxy_addr(&self) -> SocketAddr {
        self.proxy
    }
}

impl ProxyTarget for ServeChild {
    fn proxy_addr(&self) -> SocketAddr {
        self.proxy
    }
}

impl<T: ProxyTarget + ?Sized> ProxyTarget for &T {
    fn proxy_addr(&self) -> SocketAddr {
        (**self).proxy_addr()
    }
}

/// GET `/api/resource` (the token route `/` of the test configs) with a bearer token:
/// status and JSON body.
pub async fn proxy_get(proxy: impl ProxyTarget, token: &str) -> (u16, Value) {
    status_json(get_with(&proxy.url("/api/resource"), token).await).await
}

/// Status of [`proxy_get`] (200: it passes, 401: refused).
pub async fn proxy_status(proxy: impl ProxyTarget, token: &str) -> u16 {
    proxy_get(proxy, token).await.0
}

/// POSTs `logout_token=<token>` to the gateway's back-channel logout endpoint.
pub async fn post_logout(proxy: impl ProxyTarget, token: &str) -> reqwest::Response {
    post_form(
        &proxy.url("/backchannel-logout"),
        form(&[("logout_token", token)]),
    )
    .await
}

/// POSTs `token=<token>` to the gateway's revocation endpoint.
pub async fn post_revoke(proxy: impl ProxyTarget, token: &str) -> reqwest::Response {
    post_form(&proxy.url("/revoke"), form(&[("token", token)])).await
}

/// Asserts the success of a public endpoint (back-channel logout, revocation): exactly
/// `200` with `Cache-Control: no-store`; `what` names the case.
#[track_caller]
pub fn assert_endpoint_ok(resp: &reqwest::Response, what: &str) {
    assert_eq!(resp.status().as_u16(), 200, "{what}");
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{what}: Cache-Control"
    );
}

/// Asserts a proxy answer is `401 invalid_token` naming a revocation.
#[track_caller]
pub fn assert_revoked(answer: &(u16, Value)) {
    assert_revoked_as(answer, "expected 401 revoked");
}

/// Asserts that `token` is refused through the proxy as revoked ([`assert_revoked`]);
/// `what` names the case in failure messages.
pub async fn assert_token_revoked(proxy: impl ProxyTarget, token: &str, what: &str) {
    assert_revoked_as(&proxy_get(proxy, token).await, what);
}

#[track_caller]
fn assert_revoked_as(answer: &(u16, Value), what: &str) {
    assert_eq!(answer.0, 401, "{what}: {answer:?}");
    assert_eq!(answer.1["error"], "invalid_token", "{what}: {answer:?}");
    let description = answer.1["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains("revoked"),
        "{what}: description {description:?} in {answer:?}"
    );
}

/// Asserts a proxy answer is a `200` from the echo upstream.
#[track_caller]
pub fn assert_passes(answer: &(u16, Value)) {
    assert_passes_as(answer, "expected 200 from the upstream");
}

/// [`assert_passes`], with `what` naming the case in failure messages.
#[track_caller]
pub fn assert_passes_as(answer: &(u16, Value), what: &str) {
    assert_eq!(answer.0, 200, "{what}: refused with {answer:?}");
    assert_eq!(
        answer.1["echo"], true,
        "{what}: not the upstream's answer: {answer:?}"
    );
}

/// The `WWW-Authenticate` prefix of every `invalid_token` refusal (SPEC §4).
pub const INVALID_TOKEN_CHALLENGE: &str =
    "Bearer realm=\"revgate\", error=\"invalid_token\", error_description=\"";

/// The `WWW-Authenticate` header of a response, or "" when absent.
pub fn www_authenticate(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ASCII challenge").to_string())
        .unwrap_or_default()
}

/// Asserts a SPEC §4 `invalid_token` refusal whose description (header and JSON) contains
/// `word`; `case` names the case in failure messages. Returns the description.
pub async fn assert_invalid_token(resp: reqwest::Response, word: &str, case: &str) -> String {
    let www = www_authenticate(&resp);
    let (status, body) = status_json(resp).await;
    assert_eq!(status, 401, "{case}: status (body {body})");
    assert!(
        www.starts_with(INVALID_TOKEN_CHALLENGE),
        "{case}: WWW-Authenticate {www:?}"
    );
    assert!(
        www[INVALID_TOKEN_CHALLENGE.len()..].contains(word),
        "{case}: WWW-Authenticate {www:?} lacks {word:?}"
    );
    assert_eq!(body["error"], "invalid_token", "{case}: body {body}");
    let description = body["error_description"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no error_description in {body}"))
        .to_string();
    assert!(
        description.contains(word),
        "{case}: description {description:?} lacks {word:?}"
    );
    description
}
