//! Requests to the admin API of a running gateway (SPEC §5): one family of helpers, each
//! taking an [`AdminTarget`]: a `&Gateway`, a `&ServeChild` or a bare `SocketAddr` alike,
//! with the admin bearer token when the target carries one ([`AdminTarget::with_token`]).

use std::net::SocketAddr;

use serde_json::Value;

use super::child::ServeChild;
use super::gateway::Gateway;
use super::http::{client, status_json, url_encode};

/// Something with an admin listener, optionally with the admin token to send.
pub trait AdminTarget {
    /// The admin listener's address.
    fn admin_addr(&self) -> SocketAddr;

    /// The bearer token admin requests carry (none unless [`AdminTarget::with_token`]).
    fn admin_token(&self) -> Option<&str> {
        None
    }

    /// `http://admin` + `path`.
    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr())
    }

    /// This admin listener, with `Authorization: Bearer <token>` on every request.
    fn with_token<'a>(&self, token: &'a str) -> WithToken<'a> {
        WithToken {
            admin: self.admin_addr(),
            token,
        }
    }
}

/// An admin listener and the admin token to send to it.
#[derive(Debug, Clone, Copy)]
pub struct WithToken<'a> {
    admin: SocketAddr,
    token: &'a str,
}

impl AdminTarget for WithToken<'_> {
    fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    fn admin_token(&self) -> Option<&str> {
        Some(self.token)
    }
}

impl AdminTarget for SocketAddr {
    fn admin_addr(&self) -> SocketAddr {
        *self
    }
}

impl AdminTarget for Gateway {
    fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
}

impl AdminTarget for ServeChild {
    fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
}

impl<T: AdminTarget + ?Sized> AdminTarget for &T {
    fn admin_addr(&self) -> SocketAddr {
        (**self).admin_addr()
    }

    fn admin_token(&self) -> Option<&str> {
        (**self).admin_token()
    }
}

/// `method` on `path` of the admin API of `admin`, with its token if it carries one.
fn request(
    admin: &impl AdminTarget,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let req = client().request(method, admin.admin_url(path));
    match admin.admin_token() {
        Some(token) => req.bearer_auth(token),
        None => req,
    }
}

async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    req.send().await.expect("admin request")
}

/// GET on the admin API: status and JSON body.
pub async fn admin_get(admin: impl AdminTarget, path: &str) -> (u16, Value) {
    status_json(send(request(&admin, reqwest::Method::GET, path)).await).await
}

/// POST JSON to the admin API: status and JSON body.
pub async fn admin_post(admin: impl AdminTarget, path: &str, body: &Value) -> (u16, Value) {
    status_json(send(request(&admin, reqwest::Method::POST, path).json(body)).await).await
}

/// DELETE on the admin API: the status.
pub async fn admin_delete(admin: impl AdminTarget, path: &str) -> u16 {
    send(request(&admin, reqwest::Method::DELETE, path))
        .await
        .status()
        .as_u16()
}

/// `POST /v1/reload`: status and body.
pub async fn admin_reload(admin: impl AdminTarget) -> (u16, Value) {
    status_json(send(request(&admin, reqwest::Method::POST, "/v1/reload")).await).await
}

/// `POST /v1/revocations` with `body` (must answer 201): the record.
pub async fn admin_revoke(admin: impl AdminTarget, body: &Value) -> Value {
    let (status, record) = admin_post(admin, "/v1/revocations", body).await;
    assert_eq!(status, 201, "revoke {body}: {record}");
    record
}

/// `/v1/revocations/{kind}/{value}` with `value` percent-encoded.
pub fn revocation_path(kind: &str, value: &str) -> String {
    format!("/v1/revocations/{kind}/{}", url_encode(value))
}

/// Every record `GET /v1/revocations` lists (one page, limit 1000).
pub async fn list_revocations(admin: impl AdminTarget) -> Vec<Value> {
    let (status, body) = admin_get(admin, "/v1/revocations?limit=1000").await;
    assert_eq!(status, 200, "list revocations: {body}");
    body["items"].as_array().expect("items array").clone()
}

/// `GET /v1/stats` (must answer 200).
pub async fn admin_stats(admin: impl AdminTarget) -> Value {
    let (status, body) = admin_get(admin, "/v1/stats").await;
    assert_eq!(status, 200, "stats: {body}");
    body
}

/// `(jti, sid, sub)` counts from `GET /v1/stats`.
pub async fn stats_counts(admin: impl AdminTarget) -> (u64, u64, u64) {
    let body = admin_stats(admin).await;
    let n = |k: &str| {
        body[k]
            .as_u64()
            .unwrap_or_else(|| panic!("stats.{k}: {body}"))
    };
    (n("jti"), n("sid"), n("sub"))
}

/// Asserts that the store holds no revocation at all (stats and list); `what` names the
/// case.
pub async fn assert_no_revocations(admin: impl AdminTarget, what: &str) {
    assert_eq!(stats_counts(&admin).await, (0, 0, 0), "{what}: stats");
    let items = list_revocations(&admin).await;
    assert!(items.is_empty(), "{what}: recorded {items:?}");
}

/// Total records (jti + sid + sub) according to `GET /v1/stats`.
pub async fn total_records(admin: impl AdminTarget) -> u64 {
    let (jti, sid, sub) = stats_counts(admin).await;
    jti + sid + sub
}

/// Status of `GET /healthz`.
pub async fn healthz(admin: impl AdminTarget) -> u16 {
    admin_get(admin, "/healthz").await.0
}

/// `GET /metrics` (must answer 200): the Prometheus text.
pub async fn metrics_text(admin: impl AdminTarget) -> String {
    let resp = send(request(&admin, reqwest::Method::GET, "/metrics")).await;
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.expect("metrics text")
}

/// The value of the sample `name` (with labels, exactly as written) in Prometheus text.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The whole-number value of the sample `series` (name with labels, exactly as exposed)
/// on `/metrics`: a counter or a gauge that counts.
pub async fn metric(admin: impl AdminTarget, series: &str) -> u64 {
    let value = metric_in(&metrics_text(admin).await, series)
        .unwrap_or_else(|| panic!("metric {series} not exposed"));
    assert!(
        value >= 0.0 && value.fract() == 0.0,
        "metric {series}: {value} is not a count"
    );
    value as u64
}
