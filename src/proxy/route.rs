//! Which route a request path takes (SPEC §4): the path rules checked before routing
//! ([`check_path`]), the decoding of unreserved escapes, and the whole-segment,
//! longest-prefix match ([`match_route`]).

use crate::config::RouteConfig;

/// The URI with percent-encoded unreserved characters in its path decoded (RFC 3986
/// §6.2.2.2: `/admin%2Darea` and `/admin-area` are the same resource), so routes are
/// matched, and the path forwarded, in the form the upstream will see; `None` when there is
/// nothing to decode. Other escapes (`%2F`, `%20`, …) are kept as they are.
pub(super) fn decode_unreserved(uri: &http::Uri) -> Option<http::Uri> {
    let path = uri.path();
    if !path.contains('%') {
        return None;
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + uri.query().map_or(0, |q| q.len() + 1));
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                out.push(c as char);
                changed = true;
                i += 3;
            }
            _ => {
                out.push(bytes[i] as char);
                i += 1;
            }
        }
    }
    if !changed {
        return None;
    }
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(out.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// Why a request path is refused before routing (SPEC §4). Each one is a way for a path to
/// match one route here and be read as another by an upstream: Tomcat and Jetty read `..;`
/// as `..` and `;x` as a path parameter, IIS reads `\` as `/`, many servers decode `%2F`
/// or merge `//`. The same idea as Spring Security's `StrictHttpFirewall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// Not a path starting with `/` (`*`, an authority-form target).
    NotAbsolute,
    /// A `.` or `..` segment, also percent-encoded (`%2e%2e`), also followed by `;…`.
    DotSegment,
    /// `\`, raw or `%5C`.
    Backslash,
    /// `%2F`: a slash inside a segment.
    EncodedSlash,
    /// An empty segment (`//`); a trailing `/` is not one.
    EmptySegment,
    /// `;` (a path parameter), raw or `%3B`.
    Semicolon,
    /// A control character (0x00–0x1F, 0x7F), raw or percent-encoded (`%00`, `%0A`).
    ControlCharacter,
}

impl PathProblem {
    /// Every problem, in declaration order.
    pub const ALL: [PathProblem; 7] = [
        PathProblem::NotAbsolute,
        PathProblem::DotSegment,
        PathProblem::Backslash,
        PathProblem::EncodedSlash,
        PathProblem::EmptySegment,
        PathProblem::Semicolon,
        PathProblem::ControlCharacter,
    ];

    /// The `error_description` of the `400 invalid_request` answer.
    pub fn description(self) -> &'static str {
        match self {
            PathProblem::NotAbsolute => "request target is not a path starting with \"/\"",
            PathProblem::DotSegment => "path contains a dot segment (\".\" or \"..\")",
            PathProblem::Backslash => "path contains a backslash (raw or %5C)",
            PathProblem::EncodedSlash => "path contains an encoded slash (%2F)",
            PathProblem::EmptySegment => "path contains an empty segment (//)",
            PathProblem::Semicolon => "path contains a semicolon (; or %3B)",
            PathProblem::ControlCharacter => "path contains a control character",
        }
    }
}

/// Checks `path` (as sent, before any decoding) against the path rules of SPEC §4: one pass
/// over its bytes, no allocation. A segment with several problems reports the first of
/// dot segment, then the first backslash / encoded slash / control character, then `;`.
pub fn check_path(path: &str) -> Result<(), PathProblem> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathProblem::NotAbsolute);
    };
    let mut segments = rest.as_bytes().split(|b| *b == b'/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            if segments.peek().is_some() {
                return Err(PathProblem::EmptySegment);
            }
            continue;
        }
        check_segment(segment)?;
    }
    Ok(())
}

/// One non-empty segment of [`check_path`].
fn check_segment(segment: &[u8]) -> Result<(), PathProblem> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    // The segment's name is what comes before its first `;` (raw or `%3B`): a name of one
    // or two dots is a dot segment to a server that strips path parameters first.
    let mut in_name = true;
    let mut name_dots = 0usize;
    let mut name_only_dots = true;
    let mut semicolon = false;
    let mut other = None;
    let mut i = 0;
    while i < segment.len() {
        let (byte, width) = match (segment[i], segment.get(i + 1), segment.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => match hex(h).zip(hex(l)) {
                Some((h, l)) => (h << 4 | l, 3),
                None => (b'%', 1),
            },
            (b, _, _) => (b, 1),
        };
        let encoded = width == 3;
        let problem = match byte {
            b'\\' => Some(PathProblem::Backslash),
            b'/' if encoded => Some(PathProblem::EncodedSlash),
            0x00..=0x1f | 0x7f => Some(PathProblem::ControlCharacter),
            _ => None,
        };
        if other.is_none() {
            other = problem;
        }
        if byte == b';' {
            semicolon = true;
            in_name = false;
        } else if in_name {
            if byte == b'.' {
                name_dots += 1;
            } else {
                name_only_dots = false;
            }
        }
        i += width;
    }
    if name_only_dots && (name_dots == 1 || name_dots == 2) {
        return Err(PathProblem::DotSegment);
    }
    if let Some(problem) = other {
        return Err(problem);
    }
    if semicolon {
        return Err(PathProblem::Semicolon);
    }
    Ok(())
}

/// The route whose prefix matches `path` by whole segments; the longest wins.
pub fn match_route<'a>(routes: &'a [RouteConfig], path: &str) -> Option<&'a RouteConfig> {
    match_route_index(routes, path).map(|i| &routes[i])
}

/// Position in `routes` of the route [`match_route`] picks.
pub fn match_route_index(routes: &[RouteConfig], path: &str) -> Option<usize> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| prefix_matches(&r.prefix, path))
        .max_by_key(|(_, r)| r.prefix.len())
        .map(|(i, _)| i)
}

/// Whether `prefix` matches `path` by whole segments.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.len() > prefix.len()
            && path.starts_with(prefix)
            && path.as_bytes()[prefix.len()] == b'/')
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A route for the tests of this module and of `forward`.
    pub(in crate::proxy) fn route(prefix: &str, upstream: &str, strip: bool) -> RouteConfig {
        RouteConfig {
            prefix: prefix.into(),
            upstream: upstream.into(),
            strip_prefix: strip,
            timeout: std::time::Duration::from_secs(1),
            public: false,
            scopes: vec![],
        }
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let routes = vec![
            route("/", "http://a", false),
            route("/api", "http://b", false),
            route("/api/v2", "http://c", false),
        ];
        assert_eq!(match_route(&routes, "/api").unwrap().upstream, "http://b");
        assert_eq!(match_route(&routes, "/api/x").unwrap().upstream, "http://b");
        assert_eq!(match_route(&routes, "/apix").unwrap().upstream, "http://a");
        assert_eq!(
            match_route(&routes, "/api/v2/y").unwrap().upstream,
            "http://c"
        );
        let only_api = vec![route("/api", "http://b", false)];
        assert!(match_route(&only_api, "/apix").is_none());
        assert!(match_route(&only_api, "/").is_none());
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        let decode = |s: &str| decode_unreserved(&s.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(
            decode("/admin%2Darea/x?q=%2D").as_deref(),
            Some("/admin-area/x?q=%2D")
        );
        assert_eq!(decode("/%61%7e%5F%2e").as_deref(), Some("/a~_."));
        assert_eq!(decode("/a%20b%2Fc%25"), None);
        assert_eq!(decode("/plain"), None);
        assert_eq!(decode("/trailing%2").as_deref(), None);
        assert_eq!(decode("/x%2D%2").as_deref(), Some("/x-%2"));
    }

    #[test]
    fn path_rules_name_the_problem() {
        use PathProblem::*;
        for (path, problem) in [
            // dot segments, also encoded, also with a path parameter
            ("/public/../private", DotSegment),
            ("/public/%2E%2e/private", DotSegment),
            ("/a/./b", DotSegment),
            ("/a/.", DotSegment),
            ("/..", DotSegment),
            ("/pub/..;/secret", DotSegment),
            ("/pub/%2e%2e;/secret", DotSegment),
            ("/pub/.%2E%3Bx/secret", DotSegment),
            ("/pub/.;jsessionid=1", DotSegment),
            ("/pub/..%5Csecret", Backslash),
            // backslash, raw or encoded
            ("/pub/..\\secret", Backslash),
            ("/pub/a%5cb", Backslash),
            ("/pub/%5C", Backslash),
            // encoded slash
            ("/pub/a%2Fb", EncodedSlash),
            ("/pub/%2f", EncodedSlash),
            ("/pub/..%2f", EncodedSlash),
            // empty segments
            ("//admin-ish/x", EmptySegment),
            ("/pub//x", EmptySegment),
            ("//", EmptySegment),
            ("/pub///", EmptySegment),
            // semicolons anywhere
            ("/admin-ish;x", Semicolon),
            ("/admin-ish%3Bx/y", Semicolon),
            ("/admin-ish%3b", Semicolon),
            ("/;", Semicolon),
            ("/a/b;c=d/e", Semicolon),
            // control characters, raw or encoded
            ("/pub/a%00b", ControlCharacter),
            ("/pub/%0A", ControlCharacter),
            ("/pub/%0d%0aSet-Cookie:x", ControlCharacter),
            ("/pub/%7F", ControlCharacter),
            ("/pub/a\u{1}b", ControlCharacter),
            ("/pub/a\tb", ControlCharacter),
            ("/pub/a\u{7f}", ControlCharacter),
            // not a path
            ("*", NotAbsolute),
            ("", NotAbsolute),
            ("pub/x", NotAbsolute),
        ] {
            assert_eq!(check_path(path), Err(problem), "{path:?}");
        }
        for path in [
            "/",
            "/pub",
            "/pub/",
            "/a/b.c/..d",
            "/a/.../b",
            "/a/..../b",
            "/.well-known/jwks.json",
            "/a..b/.c",
            "/pub/a%20b%3Fc%25",
            "/pub/%2e%2e%2e",
            "/pub/%",
            "/pub/%2",
            "/pub/%zz",
            "/admin%2Darea",
            "/pub/x%2Ey",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path:?}");
        }
    }

    #[test]
    fn every_problem_has_its_own_description() {
        let all = PathProblem::ALL;
        let texts: std::collections::HashSet<_> = all.iter().map(|p| p.description()).collect();
        assert_eq!(texts.len(), all.len());
        assert!(PathProblem::EncodedSlash
            .description()
            .contains("encoded slash"));
        assert!(!PathProblem::EncodedSlash.description().contains("dot"));
    }

    #[test]
    fn decoding_unreserved_escapes_never_makes_a_refused_path() {
        // Every path check_path accepts stays accepted once its unreserved escapes are
        // decoded: the escapes that could matter (%2e segments) are refused before.
        for path in [
            "/a%2e/b",
            "/%2e%2e%2e",
            "/x%2E%2Ey/%2D%5F",
            "/p%75blic/%2e.x",
            "/a/%7e/%2e%61",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path}");
            let uri: http::Uri = path.parse().unwrap();
            let decoded = decode_unreserved(&uri).unwrap_or(uri);
            assert_eq!(check_path(decoded.path()), Ok(()), "{path} -> {decoded}");
        }
    }
}
