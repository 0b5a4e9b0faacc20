//! The request checks of SPEC §5 that run before any admin route, in this order (see the
//! module doc of [`super`] for why): Host (`421`), Origin (`403`), admin token (`401`),
//! method (`405` with `Allow`), media type (`415`).

use std::net::IpAddr;
use std::sync::Arc;

use warp::http::header::{
    HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING,
};
use warp::http::uri::Authority;
use warp::http::Method;
use warp::{Filter, Rejection};

use super::{with_app, Body, Route, HEALTHZ, ROUTES};
use crate::config::ServerConfig;
use crate::error::GatewayError;
use crate::App;

/// The request's authority: the URI's (absolute form) or the `Host` header's, `Ok(None)`
/// when there is neither, `Err` when they differ or `Host` does not parse.
type RequestAuthority = Result<Option<Authority>, ()>;

/// Runs [`check_request`] on every request before any route.
pub(super) fn checked(app: Arc<App>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let authority = warp::host::optional()
        .map(|a: Option<Authority>| -> RequestAuthority { Ok(a) })
        .or(warp::any().map(|| -> RequestAuthority { Err(()) }))
        .unify();
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(authority)
        .and(with_app(app))
        .and_then(
            |method: Method,
             path: warp::path::FullPath,
             headers: HeaderMap,
             authority: RequestAuthority,
             app: Arc<App>| async move {
                let config = app.config();
                check_request(&config.server, &method, path.as_str(), &headers, authority).map_err(
                    |e| {
                        if matches!(e, GatewayError::Misdirected | GatewayError::CrossOrigin) {
                            let reason = e.code_and_description().1;
                            tracing::info!(%method, %reason, "admin request refused");
                        }
                        warp::reject::custom(e)
                    },
                )
            },
        )
        .untuple_one()
}

/// The checks of SPEC §5 that come before any route, in the order the module doc gives:
/// Host (`421`), Origin (`403`), admin token (`401`), method (`405`), media type (`415`).
/// `Ok` lets the request on to the router (which answers `404` for an unknown path).
pub fn check_request(
    server: &ServerConfig,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    authority: Result<Option<Authority>, ()>,
) -> Result<(), GatewayError> {
    if headers.get_all(HOST).iter().nth(1).is_some() {
        return Err(GatewayError::invalid("two Host headers"));
    }
    match authority {
        Ok(Some(a)) if admin_host_allowed(server, &a) => {}
        _ => return Err(GatewayError::Misdirected),
    }
    if headers.contains_key(ORIGIN) {
        return Err(GatewayError::CrossOrigin);
    }
    let served: Vec<&Route> = ROUTES
        .iter()
        .filter(|r| path_matches(r.path, path))
        .collect();
    let route = served.iter().find(|r| r.method == method.as_str());
    let token_free = route.is_some_and(|r| r.path == HEALTHZ); // GET /healthz
    if !token_free {
        authorize(server, headers)?;
    }
    if served.is_empty() {
        return Ok(());
    }
    let Some(route) = route else {
        let allow: Vec<&str> = served.iter().map(|r| r.method).collect();
        return Err(GatewayError::MethodNotAllowed(allow.join(", ")));
    };
    check_media_type(route.body, headers)
}

/// Whether the admin API answers to `authority` (its port is not compared): a loopback IP
/// literal, `localhost`, the `admin_listen` IP (not a wildcard) or an `admin_hosts` entry.
fn admin_host_allowed(server: &ServerConfig, authority: &Authority) -> bool {
    if authority.as_str().contains('@') {
        return false; // userinfo has no place in Host
    }
    let host = unbracketed(authority.host());
    if let Ok(ip) = host.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        let listen = server.admin_listen.ip().to_canonical();
        return ip.is_loopback()
            || (ip == listen && !listen.is_unspecified())
            || server.admin_hosts.iter().any(|h| {
                unbracketed(h)
                    .parse::<IpAddr>()
                    .is_ok_and(|e| e.to_canonical() == ip)
            });
    }
    host.eq_ignore_ascii_case("localhost")
        || server
            .admin_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
}

/// `host` without the brackets of an IPv6 literal.
fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether request path `path` is an instance of `template`, matched as warp's `path!`
/// matches it: one leading `/`, an optional trailing `/`, no empty segment; a `{...}`
/// template segment matches any non-empty segment.
fn path_matches(template: &str, path: &str) -> bool {
    let (Some(template), Some(path)) = (template.strip_prefix('/'), path.strip_prefix('/')) else {
        return false;
    };
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut want = template.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if !g.is_empty() && (w == g || w.starts_with('{')) => {}
            _ => return false,
        }
    }
}

/// Checks `Authorization: Bearer <admin_token>` when a token is configured.
fn authorize(server: &ServerConfig, headers: &HeaderMap) -> Result<(), GatewayError> {
    let expected = &server.admin_token;
    if expected.is_empty() {
        return Ok(());
    }
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(GatewayError::AdminTokenRequired),
    }
}

/// The `415` rule for a route taking `body`.
fn check_media_type(body: Body, headers: &HeaderMap) -> Result<(), GatewayError> {
    let required = match body {
        Body::Json => "application/json",
        Body::Ndjson => "application/x-ndjson",
        Body::None if carries_body(headers) => "application/json",
        Body::None => return Ok(()),
    };
    let mut types = headers.get_all(CONTENT_TYPE).iter();
    let matches = match (types.next(), types.next()) {
        (Some(v), None) => v
            .to_str()
            .ok()
            .and_then(|t| t.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case(required)),
        _ => false, // none, or two that might disagree
    };
    if matches {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedMediaType(required))
    }
}

/// Whether the request announces a body (chunked, or a non-zero `Content-Length`).
fn carries_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn server(admin_listen: &str, hosts: &[&str], token: &str) -> ServerConfig {
        ServerConfig {
            admin_listen: admin_listen.parse().unwrap(),
            admin_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            admin_token: token.to_string(),
            ..ServerConfig::default()
        }
    }

    fn allowed(s: &ServerConfig, host: &str) -> bool {
        admin_host_allowed(s, &host.parse().unwrap())
    }

    #[test]
    fn hosts_the_admin_api_answers_to() {
        let s = server("10.0.0.5:9090", &["gw-1.internal", "[fd00::7]"], "t");
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9090",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:9090",
            "[::ffff:127.0.0.1]:9090",
            "localhost",
            "LocalHost:9090",
            "10.0.0.5:9090",
            "10.0.0.5",
            "gw-1.internal",
            "GW-1.Internal:9090",
            "[fd00::7]:9090",
            "[fd00:0::7]",
        ] {
            assert!(allowed(&s, ok), "{ok}");
        }
        for bad in [
            "rebind.evil.example",
            "rebind.evil.example:9090",
            "localhost.",
            "localhost.evil.example",
            "sub.localhost",
            "127.1",
            "10.0.0.6:9090",
            "gw-1.internal.evil",
            "0.0.0.0:9090",
            "[::]:9090",
            "user@127.0.0.1",
        ] {
            assert!(!allowed(&s, bad), "{bad}");
        }
        // A wildcard admin_listen is not a host anyone is addressed by.
        let wild = server("0.0.0.0:9090", &[], "t");
        assert!(!allowed(&wild, "0.0.0.0:9090"));
        assert!(allowed(&wild, "127.0.0.1:9090"));
    }

    #[test]
    fn paths_match_templates_as_warp_does() {
        assert!(path_matches("/v1/stats", "/v1/stats"));
        assert!(path_matches("/v1/stats", "/v1/stats/"));
        assert!(!path_matches("/v1/stats", "/v1/stats//"));
        assert!(!path_matches("/v1/stats", "//v1/stats"));
        assert!(!path_matches("/v1/stats", "/v1/stats/x"));
        assert!(!path_matches("/v1/stats", "/v1"));
        let t = "/v1/revocations/{kind}/{value}";
        assert!(path_matches(t, "/v1/revocations/sid/a%2Fb"));
        assert!(!path_matches(t, "/v1/revocations/sid"));
        assert!(!path_matches(t, "/v1/revocations/sid/"));
        assert!(!path_matches(t, "/v1/revocations//x"));
        assert!(!path_matches(t, "/v1/revocations/sid/a/b"));
        assert!(!path_matches("/healthz", "/"));
        assert!(!path_matches("/healthz", ""));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn check(
        s: &ServerConfig,
        method: &str,
        path: &str,
        h: &[(&'static str, &'static str)],
    ) -> Result<(), (u16, Option<String>)> {
        let h = headers(h);
        let authority = match h.get(HOST) {
            Some(v) => v.to_str().unwrap().parse().map(Some).map_err(|_| ()),
            None => Ok(None),
        };
        check_request(s, &method.parse().unwrap(), path, &h, authority).map_err(|e| {
            let allow = match &e {
                GatewayError::MethodNotAllowed(allow) => Some(allow.clone()),
                _ => None,
            };
            (e.status().as_u16(), allow)
        })
    }

    #[test]
    fn checks_come_in_order_host_origin_token_method_media_type() {
        let s = server("127.0.0.1:9090", &[], "secret");
        let evil = ("host", "rebind.evil.example");
        let local = ("host", "127.0.0.1:9090");
        let origin = ("origin", "https://evil.example");
        let token = ("authorization", "Bearer secret");
        let text = ("content-type", "text/plain");
        let json = ("content-type", "application/json; charset=utf-8");
        let post = "/v1/revocations";
        // Host first: even with the token, an Origin and a wrong media type.
        assert_eq!(
            check(&s, "POST", post, &[evil, origin, token, text]),
            Err((421, None))
        );
        assert_eq!(check(&s, "GET", "/healthz", &[evil]), Err((421, None)));
        assert_eq!(check(&s, "GET", "/nope", &[evil]), Err((421, None)));
        assert_eq!(
            check(&s, "GET", "/healthz", &[]),
            Err((421, None)),
            "no Host at all"
        );
        assert_eq!(
            check(&s, "GET", "/healthz", &[local, local]).unwrap_err().0,
            400
        );
        // Then Origin, before the token.
        assert_eq!(
            check(&s, "POST", post, &[local, origin, text]),
            Err((403, None))
        );
        assert_eq!(
            check(&s, "GET", "/healthz", &[local, ("origin", "null")]),
            Err((403, None))
        );
        // Then the token (all but GET /healthz).
        assert_eq!(check(&s, "POST", post, &[local, text]), Err((401, None)));
        assert_eq!(check(&s, "GET", "/nope", &[local]), Err((401, None)));
        assert_eq!(check(&s, "POST", "/healthz", &[local]), Err((401, None)));
        assert_eq!(check(&s, "GET", "/healthz", &[local]), Ok(()));
        // Then the method, with Allow.
        assert_eq!(
            check(&s, "PUT", post, &[local, token, text]),
            Err((405, Some("POST, GET".to_string())))
        );
        assert_eq!(
            check(&s, "POST", "/v1/revocations/sid/x", &[local, token]),
            Err((405, Some("GET, DELETE".to_string())))
        );
        assert_eq!(
            check(&s, "HEAD", "/healthz", &[local, token]),
            Err((405, Some("GET".to_string())))
        );
        assert_eq!(
            check(&s, "GET", "/nope", &[local, token]),
            Ok(()),
            "the router's 404"
        );
        // Then the media type.
        assert_eq!(
            check(&s, "POST", post, &[local, token, text]),
            Err((415, None))
        );
        assert_eq!(check(&s, "POST", post, &[local, token]), Err((415, None)));
        assert_eq!(
            check(
                &s,
                "POST",
                post,
                &[local, token, json, ("content-type", "text/plain")]
            ),
            Err((415, None)),
            "two Content-Types"
        );
        assert_eq!(check(&s, "POST", post, &[local, token, json]), Ok(()));
        assert_eq!(
            check(
                &s,
                "POST",
                post,
                &[local, token, ("content-type", "Application/JSON")]
            ),
            Ok(())
        );
        assert_eq!(
            check(&s, "POST", "/v1/import", &[local, token, json]),
            Err((415, None))
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/import",
                &[local, token, ("content-type", "application/x-ndjson")]
            ),
            Ok(())
        );
        // A route that reads no body: none, or an empty one, needs no type; a body does.
        assert_eq!(check(&s, "POST", "/v1/sweep", &[local, token]), Ok(()));
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/sweep",
                &[local, token, ("content-length", "0"), text]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/sweep",
                &[local, token, ("content-length", "2"), text]
            ),
            Err((415, None))
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/reload",
                &[local, token, ("transfer-encoding", "chunked")]
            ),
            Err((415, None))
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/reload",
                &[local, token, ("content-length", "2"), json]
            ),
            Ok(())
        );
    }

    #[test]
    fn without_admin_token_the_page_checks_still_apply() {
        let s = server("127.0.0.1:9090", &[], "");
        let local = ("host", "localhost:9090");
        let text = ("content-type", "text/plain");
        assert_eq!(
            check(&s, "POST", "/v1/revocations", &[local, text]),
            Err((415, None))
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/revocations",
                &[local, ("origin", "https://a.example"), text]
            ),
            Err((403, None))
        );
        assert_eq!(
            check(
                &s,
                "DELETE",
                "/v1/revocations/sub/alice",
                &[("host", "rebind.evil.example:9090")]
            ),
            Err((421, None))
        );
        assert_eq!(
            check(&s, "DELETE", "/v1/revocations/sub/alice", &[local]),
            Ok(())
        );
    }
}
