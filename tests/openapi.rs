//! OpenAPI conformance of the admin API (SPEC §5): `data/openapi.json` against the running
//! server, in both directions.
//!
//! - The document is valid enough to drive the test (OpenAPI 3, every `$ref` resolves) and
//!   is what `GET /v1/openapi.json` serves.
//! - Every documented operation, sent a valid request built from the document's examples,
//!   answers its documented success status with a body of the documented media type that
//!   matches the documented schema; the documented error answers (400, 401, 403, 404, 413,
//!   415, 421) are provoked too and match theirs.
//! - Every route the server serves (`revgate::admin::ROUTES`) is documented and vice versa;
//!   an undocumented method on a documented path answers 405 with an `Allow` header naming
//!   exactly the documented methods; undocumented paths answer 404.
//!
//! The schema checker covers the subset of JSON Schema the document uses: `$ref`, `allOf`,
//! `type`, `nullable`, `enum`, `required`, `properties`, `additionalProperties: false`,
//! `items`, `minimum`, `maximum`, `minLength`, `maxLength`, `format: date-time`.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

/// The admin token of the gateway under test (so the security requirement is exercised).
const ADMIN_TOKEN: &str = "openapi-admin-token";

fn document() -> Value {
    serde_json::from_str(revgate::admin::OPENAPI).expect("data/openapi.json is JSON")
}

/// Follows `$ref` (local `#/...` pointers only) until a non-reference value.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("non-local $ref {r}"));
                v = doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("$ref {r} does not resolve"));
            }
            None => return v,
        }
    }
    panic!("$ref chain too long")
}

/// Checks `value` against `schema`; problems are pushed to `errors` with their JSON path.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if value.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{at}: null but not nullable"));
        }
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(doc, s, value, at, errors);
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some(other) => panic!("{at}: schema type {other} not supported by the checker"),
    };
    if !type_ok {
        errors.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(n) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            errors.push(format!("{at}: {n} below minimum {}", schema["minimum"]));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            errors.push(format!("{at}: {n} above maximum {}", schema["maximum"]));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
        {
            errors.push(format!("{at}: shorter than minLength"));
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len > m)
        {
            errors.push(format!("{at}: longer than maxLength"));
        }
        if schema["format"] == "date-time" && revgate::clock::parse_rfc3339(s).is_err() {
            errors.push(format!("{at}: {s:?} is not an RFC 3339 date-time"));
        }
    }
    if let Some(obj) = value.as_object() {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().expect("required names are strings");
            if !obj.contains_key(r) {
                errors.push(format!("{at}: required property {r} missing in {value}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(doc, s, v, &format!("{at}.{k}"), errors),
                None if schema["additionalProperties"] == false => {
                    errors.push(format!("{at}: property {k} is not documented"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(doc, items, v, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Asserts `value` matches `schema`.
#[track_caller]
fn assert_schema(doc: &Value, schema: &Value, value: &Value, what: &str) {
    let mut errors = Vec::new();
    check(doc, schema, value, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{what}: {value} does not match its schema: {errors:#?}"
    );
}

/// One documented operation.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    path: String,
    op: Value,
    /// Path-level and operation-level parameters, resolved.
    params: Vec<Value>,
}

impl Operation {
    fn id(&self) -> &str {
        self.op["operationId"].as_str().unwrap_or("?")
    }
    fn secured(&self, doc: &Value) -> bool {
        let security = self.op.get("security").unwrap_or(&doc["security"]);
        security.as_array().is_some_and(|s| !s.is_empty())
    }
    fn response(&self, doc: &Value, status: u16) -> Option<Value> {
        self.op["responses"]
            .get(status.to_string())
            .map(|r| resolve(doc, r).clone())
    }
    fn success_status(&self) -> u16 {
        self.op["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .filter_map(|k| k.parse::<u16>().ok())
            .filter(|s| (200..300).contains(s))
            .min()
            .unwrap_or_else(|| panic!("{} documents no 2xx answer", self.id()))
    }
    /// The path with every path parameter replaced by its documented example.
    fn example_path(&self) -> String {
        let mut path = self.path.clone();
        for p in self.params.iter().filter(|p| p["in"] == "path") {
            let name = p["name"].as_str().unwrap();
            let example = p["example"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: path parameter {name} has no example", self.id()));
            path = path.replace(&format!("{{{name}}}"), example);
        }
        path
    }
    /// `?name=example` for every query parameter with an example.
    fn example_query(&self) -> String {
        let pairs: Vec<String> = self
            .params
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| {
                let v = p.get("example")?;
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                Some(format!("{}={v}", p["name"].as_str().unwrap()))
            })
            .collect();
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }
    /// Media type and example body of the request body, if any.
    fn example_body(&self, doc: &Value) -> Option<(String, String)> {
        let body = resolve(doc, self.op.get("requestBody")?);
        let (media, content) = body["content"].as_object()?.iter().next()?;
        let example = content
            .get("example")
            .unwrap_or_else(|| panic!("{}: request body has no example", self.id()));
        let text = match example {
            Value::String(s) if media != "application/json" => s.clone(),
            other => other.to_string(),
        };
        Some((media.clone(), text))
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let shared: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| resolve(doc, p).clone())
            .collect();
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let mut params = shared.clone();
            params.extend(
                op.get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|p| resolve(doc, p).clone()),
            );
            out.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                op: op.clone(),
                params,
            });
        }
    }
    out
}

/// A gateway started from a config file (so reload answers 200) with an admin token.
async fn start() -> (tempfile::TempDir, std::path::PathBuf, Gateway) {
    let (dir, store) = temp_store();
    let upstream = start_echo().await;
    let path = dir.path().join("revgate.toml");
    let text = with_server_keys(
        &config_text(upstream, &store, ""),
        &format!("admin_token = \"{ADMIN_TOKEN}\""),
    );
    write_config(&path, &text);
    let gw = Gateway::start_from_file(&path).await;
    (dir, path, gw)
}

/// Sends `method url` with an optional body and the admin token when `auth`.
async fn send(
    method: &str,
    url: &str,
    body: Option<(String, String)>,
    auth: bool,
) -> reqwest::Response {
    send_with(method, url, body, auth, &[]).await
}

/// [`send`] with extra request headers (`Host`, `Origin`).
async fn send_with(
    method: &str,
    url: &str,
    body: Option<(String, String)>,
    auth: bool,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client().request(method.parse().unwrap(), url);
    if auth {
        req = req.bearer_auth(ADMIN_TOKEN);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some((media, text)) = body {
        req = req.header("content-type", media).body(text);
    }
    req.send().await.expect("admin request")
}

/// Checks status, media type and body of `resp` against response `status` of `op`.
async fn assert_documented(
    doc: &Value,
    op: &Operation,
    resp: reqwest::Response,
    status: u16,
    case: &str,
) {
    let got = resp.status().as_u16();
    let media = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap_or_default();
    let what = format!("{} {} ({}; {case})", op.method, op.path, op.id());
    assert_eq!(got, status, "{what}: status; body {text}");
    let documented = op
        .response(doc, status)
        .unwrap_or_else(|| panic!("{what}: status {status} is not documented"));
    let Some(content) = documented.get("content").and_then(Value::as_object) else {
        assert!(
            text.is_empty(),
            "{what}: documented without a body, got {text}"
        );
        return;
    };
    let (doc_media, media_obj) = content
        .iter()
        .find(|(m, _)| media.starts_with(m.as_str()))
        .unwrap_or_else(|| panic!("{what}: content-type {media:?} not documented ({content:?})"));
    let schema = &media_obj["schema"];
    match doc_media.as_str() {
        "application/json" => {
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"));
            assert_schema(doc, schema, &value, &what);
        }
        "application/x-ndjson" => {
            let mut lines = 0;
            for line in text.lines().filter(|l| !l.is_empty()) {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{what}: NDJSON line is not JSON ({e}): {line}"));
                assert_schema(doc, schema, &value, &what);
                lines += 1;
            }
            assert!(
                lines > 0,
                "{what}: the export should hold the seeded record"
            );
        }
        "text/plain" => assert!(!text.is_empty(), "{what}: empty text"),
        other => panic!("{what}: the checker does not know media type {other}"),
    }
}

/// Puts the record the `{kind}/{value}` examples name (and the create example) in place.
async fn seed(doc: &Value, gw: &Gateway) {
    let create = operations(doc)
        .into_iter()
        .find(|o| o.id() == "createRevocation")
        .expect("createRevocation documented");
    let resp = send(
        "POST",
        &gw.admin_url(&create.path),
        create.example_body(doc),
        true,
    )
    .await;
    assert_eq!(
        resp.status().as_u16(),
        201,
        "seeding: {:?}",
        resp.text().await
    );
}

#[tokio::test]
async fn the_served_document_is_data_openapi_json() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "OpenAPI 3 document"
    );
    // Every $ref resolves (resolve panics otherwise).
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(m) => {
                if m.contains_key("$ref") {
                    resolve(doc, v);
                }
                m.values().for_each(|x| walk(doc, x));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(doc, x)),
            _ => {}
        }
    }
    walk(&doc, &doc);
    let (_dir, _path, gw) = start().await;
    let resp = send("GET", &gw.admin_url("/v1/openapi.json"), None, true).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served: Value = resp.json().await.unwrap();
    assert_eq!(served, for_gateway(&doc, &[ISS], true));
    gw.stop().await;
}

/// `doc` as a gateway with `issuers` (and an admin token when `token`) serves it: the
/// issuer a request may name is one of them (required with several), and without a token
/// no operation requires one.
fn for_gateway(doc: &Value, issuers: &[&str], token: bool) -> Value {
    let mut doc = doc.clone();
    if !token {
        doc["security"] = json!([]);
    }
    let params = doc["paths"]["/v1/revocations/{kind}/{value}"]["parameters"]
        .as_array_mut()
        .unwrap();
    let issuer = params.iter_mut().find(|p| p["name"] == "issuer").unwrap();
    issuer["schema"]["enum"] = json!(issuers);
    issuer["required"] = json!(issuers.len() > 1);
    let body = &mut doc["components"]["schemas"]["RevocationRequest"];
    body["properties"]["issuer"]["enum"] = json!(issuers);
    if issuers.len() > 1 {
        body["required"]
            .as_array_mut()
            .unwrap()
            .push(json!("issuer"));
    }
    doc
}

#[tokio::test]
async fn the_served_document_follows_the_token_and_the_issuers() {
    let doc = document();
    // No admin token (as `revgate demo` runs): no security requirement.
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    let gw = Gateway::start(&config_text(upstream, &store, "")).await;
    let resp = send("GET", &gw.admin_url("/v1/openapi.json"), None, false).await;
    assert_eq!(resp.status().as_u16(), 200);
    let served: Value = resp.json().await.unwrap();
    assert_eq!(served["security"], json!([]));
    assert_eq!(served, for_gateway(&doc, &[ISS], false));
    gw.stop().await;

    // Two issuers: each may be named, and one must be.
    let dir = tempfile::tempdir().unwrap();
    let second = "[[issuer]]\nissuer = \"https://second.test/\"\naudiences = [\"x\"]\n\
                  jwks_url = \"https://second.test/jwks\"\n";
    let text = config_text(upstream, &dir.path().join("store.db"), second);
    let path = write_config_file(dir.path(), &text);
    let gw = Gateway::start_from_file(&path).await;
    let served: Value = send("GET", &gw.admin_url("/v1/openapi.json"), None, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        served,
        for_gateway(&doc, &[ISS, "https://second.test/"], false)
    );
    // A reload to one issuer and a token: the next answer follows.
    write_config(
        &path,
        &with_server_keys(
            &config_text(upstream, &dir.path().join("store.db"), ""),
            &format!("admin_token = \"{ADMIN_TOKEN}\""),
        ),
    );
    assert_eq!(admin_reload(&gw).await.0, 200);
    let served: Value = send("GET", &gw.admin_url("/v1/openapi.json"), None, true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(served, for_gateway(&doc, &[ISS], true));
    gw.stop().await;
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let doc = document();
    let (_dir, path, gw) = start().await;
    let ops = operations(&doc);
    assert_eq!(ops.len(), revgate::admin::ROUTES.len());
    for op in &ops {
        seed(&doc, &gw).await;
        let url = gw.admin_url(&format!("{}{}", op.example_path(), op.example_query()));
        let mut body = op.example_body(&doc);
        if op.id() == "revokeToken" {
            // The document's example cannot carry a token that verifies here.
            body = Some((
                "application/json".into(),
                json!({"token": token("ann", "s-openapi", &unique_id("openapi")), "reason": "logout"})
                    .to_string(),
            ));
        }
        if op.id() == "importRevocations" {
            // The example's issuer is not configured here: use the test issuer so it lands.
            body = body.map(|(m, t)| (m, t.replace("https://idp.example.com/", ISS)));
        }
        let resp = send(&op.method, &url, body, true).await;
        assert_documented(&doc, op, resp, op.success_status(), "valid request").await;

        // The security requirement: without the admin token, 401 (documented), except
        // for operations with `security: []`.
        if op.secured(&doc) {
            let resp = send(&op.method, &url, op.example_body(&doc), false).await;
            assert_documented(&doc, op, resp, 401, "no admin token").await;
        } else {
            let resp = send(&op.method, &url, None, false).await;
            assert_eq!(
                resp.status().as_u16(),
                op.success_status(),
                "{} without token",
                op.id()
            );
        }

        // A web page: a foreign Host (421) and an Origin (403), with the admin token and a
        // valid body; a body of another media type (415).
        let rebound = [("host", "rebind.evil.example")];
        let resp = send_with(&op.method, &url, op.example_body(&doc), true, &rebound).await;
        assert_documented(&doc, op, resp, 421, "foreign Host").await;
        let origin = [("origin", "https://evil.example")];
        let resp = send_with(&op.method, &url, op.example_body(&doc), true, &origin).await;
        assert_documented(&doc, op, resp, 403, "Origin header").await;
        if op.response(&doc, 415).is_some() {
            let text = op
                .example_body(&doc)
                .map_or_else(|| "{}".to_string(), |(_, t)| t);
            let body = Some(("text/plain;charset=UTF-8".to_string(), text));
            let resp = send(&op.method, &url, body, true).await;
            assert_documented(&doc, op, resp, 415, "text/plain body").await;
        }

        if op.response(&doc, 404).is_some() {
            let missing = op
                .path
                .replace("{kind}", "sid")
                .replace("{value}", "no-such-value");
            let resp = send(&op.method, &gw.admin_url(&missing), None, true).await;
            assert_documented(&doc, op, resp, 404, "unknown record").await;
        }

        if op.response(&doc, 413).is_some() {
            let huge = json!({"kind": "jti", "value": "x", "reason": "r".repeat(70 * 1024)});
            let resp = send(
                &op.method,
                &url,
                Some(("application/json".into(), huge.to_string())),
                true,
            )
            .await;
            assert_documented(&doc, op, resp, 413, "body over 64 KiB").await;
        }

        if op.response(&doc, 400).is_some() {
            let example_path = op.example_path();
            let (url, body): (String, Option<(String, String)>) = match op.id() {
                "createRevocation" => (
                    url.clone(),
                    Some(("application/json".into(), r#"{"kind":"jti"}"#.into())),
                ),
                "revokeToken" => (
                    url.clone(),
                    Some(("application/json".into(), r#"{"token":"a.b.c"}"#.into())),
                ),
                "listRevocations" => (gw.admin_url(&format!("{example_path}?limit=0")), None),
                "getRevocation" | "deleteRevocation" => (
                    gw.admin_url(&op.path.replace("{kind}", "nope").replace("{value}", "x")),
                    None,
                ),
                "exportRevocations" => (gw.admin_url(&format!("{example_path}?kind=nope")), None),
                "importRevocations" => (
                    gw.admin_url(&format!("{example_path}?dry_run=maybe")),
                    Some(("application/x-ndjson".into(), String::new())),
                ),
                "reload" => {
                    let good = std::fs::read_to_string(&path).unwrap();
                    write_config(&path, &with_server_keys(&good, "bogus = 1"));
                    (url.clone(), None)
                }
                other => panic!("{other} documents 400: add a bad request for it here"),
            };
            let resp = send(&op.method, &url, body, true).await;
            assert_documented(&doc, op, resp, 400, "bad request").await;
            if op.id() == "reload" {
                let bad = std::fs::read_to_string(&path).unwrap();
                write_config(&path, &bad.replacen("bogus = 1\n", "", 1));
                let (status, body) = admin_reload(gw.admin.with_token(ADMIN_TOKEN)).await;
                assert_eq!(status, 200, "the restored file reloads: {body}");
            }
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn every_served_route_is_documented_and_nothing_else_answers() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|o| (o.method, o.path))
        .collect();
    let served: BTreeSet<(String, String)> = revgate::admin::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(
        served.len(),
        revgate::admin::ROUTES.len(),
        "ROUTES has duplicates"
    );
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );

    let (_dir, _path, gw) = start().await;
    let concrete = |p: &str| p.replace("{kind}", "sid").replace("{value}", "probe");
    // Every served route exists on the server (not the catch-all 404 nor 405) ...
    for (method, path) in &served {
        let resp = send(method, &gw.admin_url(&concrete(path)), None, true).await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            body["error_description"] != "no such admin route",
            "{method} {path} is in ROUTES but the server does not serve it"
        );
    }
    // ... and an undocumented method on a documented path answers 405, whose Allow names
    // exactly the documented methods.
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let allowed: BTreeSet<&str> = documented
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m.as_str())
            .collect();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if allowed.contains(method) {
                continue;
            }
            let resp = send(method, &gw.admin_url(&concrete(path)), None, true).await;
            let status = resp.status().as_u16();
            assert_eq!(
                status, 405,
                "{method} {path} is not documented but answered {status}"
            );
            let allow: BTreeSet<&str> = resp
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"))
                .split(',')
                .map(str::trim)
                .collect();
            assert_eq!(allow, allowed, "{method} {path}: Allow");
        }
    }
    // Undocumented paths answer 404.
    for path in [
        "/v1",
        "/v1/",
        "/v1/nope",
        "/v1/revocations/sid",
        "/v1/revocations/sid/a/b",
        "/v1/openapi.yaml",
        "/admin",
        "/healthz/x",
    ] {
        let resp = send("GET", &gw.admin_url(path), None, true).await;
        assert_eq!(resp.status().as_u16(), 404, "GET {path}");
    }
    gw.stop().await;
}
