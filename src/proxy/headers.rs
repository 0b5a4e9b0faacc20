//! The headers of a forwarded request (SPEC §4, §7): hop-by-hop headers removed, the
//! gateway's identity headers (`X-Auth-*`, client copies and their `_` spellings always
//! removed), the forwarding headers by `server.trusted_proxies`, `X-Request-Id`, and what a
//! CORS preflight let through without a token may not carry.

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Request;

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1), besides any
/// named in `Connection`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Identity headers the gateway sets upstream; copies sent by clients are always removed.
pub(super) const X_AUTH_ISS: HeaderName = HeaderName::from_static("x-auth-iss");
pub(super) const X_AUTH_SUB: HeaderName = HeaderName::from_static("x-auth-sub");
pub(super) const X_AUTH_SID: HeaderName = HeaderName::from_static("x-auth-sid");
pub(super) const X_AUTH_JTI: HeaderName = HeaderName::from_static("x-auth-jti");
/// Request id passed upstream and echoed to the client (SPEC §7).
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// RFC 7239; like `X-Real-IP`, kept only from `server.trusted_proxies`, never set.
pub(super) const FORWARDED: HeaderName = header::FORWARDED;
pub(super) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `X-Forwarded-Proto` the gateway sets on a plain proxy listener.
pub(super) const LISTENER_SCHEME: HeaderValue = HeaderValue::from_static("http");
/// `X-Forwarded-Proto` the gateway sets on a TLS proxy listener (`server.tls_cert`).
pub(super) const TLS_LISTENER_SCHEME: HeaderValue = HeaderValue::from_static("https");

/// The scheme of the proxy listener, for `X-Forwarded-Proto`.
pub(super) fn listener_scheme(tls: bool) -> HeaderValue {
    if tls {
        TLS_LISTENER_SCHEME
    } else {
        LISTENER_SCHEME
    }
}

/// Whether `headers` ask for a WebSocket (RFC 6455 §4.1): `Connection` names `upgrade` and
/// `Upgrade` names `websocket`, both case-insensitively. Only an HTTP/1.1 `GET` can be one
/// (HTTP/2 forbids both headers); the caller checks method and version.
pub(super) fn asks_for_websocket(headers: &HeaderMap) -> bool {
    let names = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    names(header::CONNECTION, "upgrade") && names(header::UPGRADE, "websocket")
}

/// The client address for the access log when the peer is a trusted proxy: walking
/// `X-Forwarded-For` from the right (the entries appended by proxies nearest to us), the
/// first address that is not itself a trusted proxy; the leftmost when all are. `None`
/// without the header or when an entry on the way does not parse (nothing reliable left).
pub(super) fn forwarded_client(
    headers: &HeaderMap,
    trusted: &[crate::config::IpNet],
) -> Option<std::net::IpAddr> {
    // Right to left without collecting: the last header line first, each line's entries
    // from its end.
    let entries = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','))
        .map(str::trim);
    let mut last = None;
    for entry in entries {
        let ip: std::net::IpAddr = entry.parse().ok()?;
        let ip = ip.to_canonical();
        if !trusted.iter().any(|net| net.contains(ip)) {
            return Some(ip);
        }
        last = Some(ip);
    }
    last
}

/// Headers the gateway sets, or removes from untrusted peers, whose `_` spellings
/// (`X_Auth_Sub`, `x-forwarded_for`) are always removed (SPEC §4).
const UNDERSCORE_GUARDED: [&str; 9] = [
    "x-auth-iss",
    "x-auth-sub",
    "x-auth-sid",
    "x-auth-jti",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// Method-override headers some frameworks honour (an `OPTIONS` read as `DELETE`): never
/// on a preflight let through without a token.
pub(super) const METHOD_OVERRIDE: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-http-method"),
];

/// What else a preflight never carries upstream: a body length (its body is dropped) and
/// credentials (a browser sends none on a preflight; an upstream must not read unverified
/// ones on a request that passed without a token).
pub(super) const PREFLIGHT_NEVER: [HeaderName; 3] = [
    header::CONTENT_LENGTH,
    header::AUTHORIZATION,
    header::COOKIE,
];

/// Longest client-sent `X-Request-Id` kept as is; longer or unsafe ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A CORS preflight (Fetch standard): `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. An `OPTIONS` lacking either is an ordinary request.
pub(super) fn is_cors_preflight<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The client's `X-Request-Id` when it is short and printable, else a new one
/// (`<seed>-<counter>` in hex). A header value, so passing it upstream and echoing it to the
/// client share one buffer: the client's own value costs no copy, a new one one allocation.
pub(super) fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= MAX_REQUEST_ID_LEN && b.iter().all(u8::is_ascii_graphic) {
            return v.clone();
        }
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(crate::ids::random_u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // `{seed:016x}-{n:08x}` without the formatting machinery: at most 16 + 1 + 16 bytes.
    let mut buf = [0u8; 33];
    let mut len = push_hex(&mut buf, 0, seed, 16);
    buf[len] = b'-';
    len = push_hex(&mut buf, len + 1, n, 8);
    HeaderValue::from_bytes(&buf[..len]).expect("hex digits and '-' are a valid header value")
}

/// Writes `value` in lower-case hex at `buf[at..]`, at least `min_digits` digits (zero
/// padded); returns the end position.
fn push_hex(buf: &mut [u8], at: usize, value: u64, min_digits: usize) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let significant = (16 - value.leading_zeros() as usize / 4).max(1);
    let digits = significant.max(min_digits);
    for i in 0..digits {
        let shift = 4 * (digits - 1 - i);
        let nibble = if shift >= 64 {
            0
        } else {
            (value >> shift) & 0xf
        };
        buf[at + i] = DIGITS[nibble as usize];
    }
    at + digits
}

/// The `X-Forwarded-For` entry of a connection's peer: its address as text (IPv4-mapped
/// IPv6 addresses as IPv4). Built once per connection; every request clones it.
pub(crate) fn peer_value(peer: std::net::IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_canonical().to_string())
        .expect("an IP address is a valid header value")
}

/// The request's host for `X-Forwarded-Host`: its `Host` header, else the authority of an
/// absolute-form target (`GET http://host/path`), else none.
pub(super) fn request_host(uri: &http::Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    if let Some(host) = headers.get(header::HOST) {
        return Some(host.clone());
    }
    uri.authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

/// Removes every client header whose name, with `_` read as `-`, is one the gateway sets or
/// controls ([`UNDERSCORE_GUARDED`], plus [`METHOD_OVERRIDE`] on a preflight) but which is
/// not spelled exactly so: CGI, WSGI, PHP and Rack map `X_Auth_Sub` and `X-Auth-Sub` to the
/// same variable, so an app could read the client's copy as the gateway's. Always removed,
/// from trusted proxies too: a proxy never sends these spellings. One scan of the header
/// names; names without `_` (nearly all) cost one byte search each, and nothing is
/// allocated unless such a header is present.
pub(super) fn remove_underscore_spellings(headers: &mut HeaderMap, preflight: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let n = name.as_str();
        if !n.as_bytes().contains(&b'_') {
            continue;
        }
        let guarded = UNDERSCORE_GUARDED
            .iter()
            .any(|g| same_but_underscores(n, g))
            || (preflight
                && METHOD_OVERRIDE
                    .iter()
                    .any(|g| same_but_underscores(n, g.as_str())));
        if guarded {
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Whether header name `name` (lower case) is `canonical` with some `-` written as `_`.
fn same_but_underscores(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// SPEC §4 forwarding headers. From a peer in `server.trusted_proxies` (`trusted`) the
/// client's are kept, the peer is appended to `X-Forwarded-For`, and `X-Forwarded-Proto` /
/// `X-Forwarded-Host` pass as sent (set by the gateway only when absent). From any other
/// peer `Forwarded` and `X-Real-IP` are removed and the three `X-Forwarded-*` are the
/// gateway's own: the peer (`peer`, its [`peer_value`]), `scheme` (the listener's), the
/// request's host (`host`; none without one).
pub(super) fn set_forwarding_headers(
    headers: &mut HeaderMap,
    trusted: bool,
    peer: &HeaderValue,
    scheme: HeaderValue,
    host: Option<HeaderValue>,
) {
    if !trusted {
        remove_present(headers, &[FORWARDED, X_REAL_IP]);
        headers.insert(X_FORWARDED_FOR, peer.clone());
        headers.insert(X_FORWARDED_PROTO, scheme);
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
        return;
    }
    // Several X-Forwarded-For headers are one list (RFC 9110 §5.3): keep every entry.
    let mut list = bytes::BytesMut::new();
    for prev in headers.get_all(&X_FORWARDED_FOR) {
        list.extend_from_slice(prev.as_bytes());
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(peer.as_bytes());
    if let Ok(v) = HeaderValue::from_maybe_shared(list.freeze()) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, scheme);
    }
    if let (false, Some(host)) = (headers.contains_key(&X_FORWARDED_HOST), host) {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// Sets identity header `name` to `value` (a value built once per verified token: a
/// reference-counted clone, no copy); an absent claim sets nothing.
pub(super) fn set_identity(
    headers: &mut HeaderMap,
    name: &HeaderName,
    value: Option<&HeaderValue>,
) {
    if let Some(v) = value {
        headers.insert(name.clone(), v.clone());
    }
}

/// Removes hop-by-hop headers and every header the `Connection` header names. Allocates
/// nothing unless `Connection` has more than one value.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        // The values are taken out first (reference-counted clones) so the names they list
        // can be removed from the map; more than one `Connection` header is rare.
        let mut more = Vec::new();
        let first = {
            let mut all = headers.get_all(header::CONNECTION).iter();
            let first = all.next().cloned();
            more.extend(all.cloned());
            first
        };
        for value in first.iter().chain(&more) {
            let Ok(list) = value.to_str() else { continue };
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                // A `&str` key is parsed (and lower-cased) on the stack; one that is not a
                // header name matches nothing.
                headers.remove(name);
            }
        }
    }
    remove_present(headers, &HOP_BY_HOP);
}

/// Removes every header named in `names` (at most 32). One pass over the headers present
/// (a request has a handful) finds which are there, so the names that are absent — nearly
/// all — cost a comparison each instead of a hash lookup.
pub(super) fn remove_present(headers: &mut HeaderMap, names: &[HeaderName]) {
    debug_assert!(names.len() <= 32);
    let mut found: u32 = 0;
    for key in headers.keys() {
        if let Some(i) = names.iter().position(|n| n == key) {
            found |= 1 << i;
        }
    }
    while found != 0 {
        let i = found.trailing_zeros() as usize;
        headers.remove(&names[i]);
        found &= found - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscore_spellings_of_controlled_headers_are_removed() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("x_auth_sub", "root"),
            ("x-auth_sub", "root"),
            ("x_auth-iss", "evil"),
            ("x_request_id", "evil"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-forwarded_host", "evil"),
            ("x_real_ip", "1.2.3.4"),
            ("x_http_method_override", "DELETE"),
            ("x_custom_header", "kept"),
            ("x-auth-subject", "kept"),
            ("x_auth_sub_", "kept"),
        ] {
            h.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let mut preflight = h.clone();
        remove_underscore_spellings(&mut h, false);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "x-auth-subject",
                "x_auth_sub_",
                "x_custom_header",
                "x_http_method_override"
            ]
        );
        remove_underscore_spellings(&mut preflight, true);
        assert!(!preflight.contains_key("x_http_method_override"));
        assert!(preflight.contains_key("x_custom_header"));
    }

    #[test]
    fn forwarding_headers_follow_the_peers_trust() {
        let client_headers = || {
            let mut h = HeaderMap::new();
            h.append(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
            h.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.2"));
            h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
            h.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.example"));
            h.insert(FORWARDED, HeaderValue::from_static("for=192.0.2.1"));
            h.insert(X_REAL_IP, HeaderValue::from_static("192.0.2.1"));
            h
        };
        let host = Some(HeaderValue::from_static("api.example"));
        let peer = peer_value("::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(
            peer, "10.1.2.3",
            "IPv4-mapped addresses are written as IPv4"
        );
        let peer = &peer;

        let mut h = client_headers();
        set_forwarding_headers(&mut h, false, peer, LISTENER_SCHEME, host.clone());
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "api.example");
        assert!(!h.contains_key(&FORWARDED) && !h.contains_key(&X_REAL_IP));
        let mut h = client_headers();
        set_forwarding_headers(&mut h, false, peer, LISTENER_SCHEME, None);
        assert!(!h.contains_key(&X_FORWARDED_HOST));

        let mut h = client_headers();
        let v6 = peer_value("2001:db8::7".parse().unwrap());
        set_forwarding_headers(&mut h, true, &v6, LISTENER_SCHEME, host.clone());
        assert_eq!(
            h[&X_FORWARDED_FOR],
            "203.0.113.7, 198.51.100.2, 2001:db8::7"
        );
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "evil.example");
        assert_eq!(h[&FORWARDED], "for=192.0.2.1");
        assert_eq!(h[&X_REAL_IP], "192.0.2.1");
        let mut h = HeaderMap::new();
        set_forwarding_headers(&mut h, true, peer, LISTENER_SCHEME, host);
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "api.example");
    }

    #[test]
    fn websocket_requests_are_recognised_by_both_headers() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(HeaderName::from_static(k), HeaderValue::from_static(v));
            }
            m
        };
        assert!(asks_for_websocket(&h(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket")
        ])));
        assert!(!asks_for_websocket(&h(&[("upgrade", "websocket")])));
        assert!(!asks_for_websocket(&h(&[
            ("connection", "upgrade"),
            ("upgrade", "h2c")
        ])));
        assert!(!asks_for_websocket(&h(&[
            ("connection", "upgrades"),
            ("upgrade", "websocket")
        ])));
    }

    #[test]
    fn the_forwarded_client_is_the_nearest_untrusted_address() {
        let trusted: Vec<crate::config::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let with = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(X_FORWARDED_FOR, HeaderValue::from_static(v));
            m
        };
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        assert_eq!(
            forwarded_client(&with("198.51.100.9, 203.0.113.7, 10.1.1.1"), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            forwarded_client(&with("10.2.2.2, 10.1.1.1"), &trusted),
            ip("10.2.2.2")
        );
        assert_eq!(
            forwarded_client(&with("203.0.113.7, junk, 10.1.1.1"), &trusted),
            None
        );
        assert_eq!(
            forwarded_client(&with("junk, 203.0.113.7"), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(forwarded_client(&HeaderMap::new(), &trusted), None);
        // Several header lines are one list in order: the last line holds the nearest.
        let mut lines = HeaderMap::new();
        lines.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("203.0.113.7, 10.3.3.3"),
        );
        lines.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("198.51.100.9, 10.1.1.1"),
        );
        assert_eq!(forwarded_client(&lines, &trusted), ip("198.51.100.9"));
        let mut lines = HeaderMap::new();
        lines.append(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
        lines.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("10.3.3.3, 10.1.1.1"),
        );
        assert_eq!(forwarded_client(&lines, &trusted), ip("203.0.113.7"));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "5".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));

        // Several Connection headers, names in any case, junk and empty entries.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "X-One, ,bad name".parse().unwrap());
        h.append(header::CONNECTION, "x-two".parse().unwrap());
        for name in ["x-one", "x-two", "x-kept", "upgrade", "te"] {
            h.insert(HeaderName::from_static(name), "1".parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn remove_present_removes_every_value_of_the_named_headers_only() {
        let mut h = HeaderMap::new();
        h.append(header::HOST, "a".parse().unwrap());
        h.append(X_AUTH_SUB, "forged".parse().unwrap());
        h.append(X_AUTH_SUB, "again".parse().unwrap());
        h.append(header::ACCEPT, "*/*".parse().unwrap());
        remove_present(&mut h, &[X_AUTH_ISS, X_AUTH_SUB, header::HOST]);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
        remove_present(&mut h, &[]);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn request_ids_are_the_clients_when_printable_else_new() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, "abc-123".parse().unwrap());
        assert_eq!(request_id(&h), "abc-123");
        for bad in ["", "has space", &"x".repeat(MAX_REQUEST_ID_LEN + 1)] {
            h.insert(X_REQUEST_ID, bad.parse().unwrap());
            let id = request_id(&h);
            assert_ne!(id, bad);
            let (seed, n) = id.to_str().unwrap().split_once('-').unwrap();
            assert_eq!(seed.len(), 16, "{id:?}");
            assert!(n.len() >= 8, "{id:?}");
            assert!(u64::from_str_radix(seed, 16).is_ok() && u64::from_str_radix(n, 16).is_ok());
        }
        let (a, b) = (request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        assert_ne!(a, b, "new ids differ");
    }

    #[test]
    fn hex_is_zero_padded_to_the_minimum_and_never_cut() {
        let mut buf = [0u8; 33];
        let end = push_hex(&mut buf, 0, 0xab, 8);
        assert_eq!(&buf[..end], b"000000ab");
        let end = push_hex(&mut buf, 0, u64::MAX, 8);
        assert_eq!(&buf[..end], b"ffffffffffffffff");
        let end = push_hex(&mut buf, 0, 0, 16);
        assert_eq!(&buf[..end], b"0000000000000000");
        let end = push_hex(&mut buf, 0, 0x1_0000_0000, 8);
        assert_eq!(&buf[..end], b"100000000");
    }
}
