//! `revgate discover ISSUER_URL [--client-id ID] [--audience AUD]` (SPEC §2): reads the
//! provider's discovery document (OpenID Connect Discovery 1.0 §4) and its JWKS, and
//! writes a ready `[[issuer]]` block for it, with the known quirks of the detected
//! provider set and commented.
//!
//! - `algorithms` / `logout_algorithms`: what the provider advertises
//!   (`id_token_signing_alg_values_supported`) that its keys can really verify (a key's JWK
//!   `alg`, else its type and curve); never `none` or an HMAC algorithm (a JWKS never
//!   carries HMAC keys).
//! - `session_claim`, `require_typ`, `logout_require_exp`: from the provider's known
//!   behaviour ([`Provider`]), each with a comment saying why.
//! - `logout_audiences` from `--client-id`; `audiences` from `--audience`.
//!
//! What the operator must still do and what looks wrong go to stderr ([`Discovered::todo`],
//! [`Discovered::warnings`]). [`render`] is pure (unit-tested on fixture documents);
//! [`discover`] fetches.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

/// Bound for each request (discovery document, JWKS): connect, headers and body.
pub const DISCOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document or JWKS accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The providers whose behaviour revgate knows (STANDARDS.md §7 and the README recipes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Keycloak (`…/realms/<realm>`).
    Keycloak,
    /// Auth0 (`https://<tenant>.auth0.com/`, or a custom domain with Auth0's endpoints).
    Auth0,
    /// Okta (`https://<org>.okta.com/…`).
    Okta,
    /// Microsoft Entra ID (`https://login.microsoftonline.com/<tenant>/v2.0`).
    EntraId,
    /// LemonLDAP::NG (its `/oauth2/` endpoints).
    LemonLdap,
    /// panva's `oidc-provider` (the certified Node.js OP) with its default routes.
    OidcProvider,
    /// Anything else: the standard's defaults.
    Generic,
}

impl Provider {
    /// The provider's name as printed.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Keycloak => "Keycloak",
            Provider::Auth0 => "Auth0",
            Provider::Okta => "Okta",
            Provider::EntraId => "Microsoft Entra ID",
            Provider::LemonLdap => "LemonLDAP::NG",
            Provider::OidcProvider => "panva oidc-provider",
            Provider::Generic => "generic OpenID Provider",
        }
    }

    /// Recognises a provider from its discovery document.
    pub fn detect(doc: &Value) -> Provider {
        let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("");
        let issuer = s("issuer");
        let host = issuer
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .unwrap_or("")
            .to_ascii_lowercase();
        if issuer.contains("/realms/") && s("token_endpoint").contains("/protocol/openid-connect/")
        {
            Provider::Keycloak
        } else if host.ends_with(".auth0.com") || doc.get("mfa_challenge_endpoint").is_some() {
            Provider::Auth0
        } else if host.ends_with(".okta.com")
            || host.ends_with(".oktapreview.com")
            || host.ends_with(".okta-emea.com")
        {
            Provider::Okta
        } else if host == "login.microsoftonline.com" || host == "sts.windows.net" {
            Provider::EntraId
        } else if s("check_session_iframe").ends_with("/oauth2/checksession.html") {
            Provider::LemonLdap
        } else if s("end_session_endpoint").ends_with("/session/end")
            && s("jwks_uri").ends_with("/jwks")
        {
            Provider::OidcProvider
        } else {
            Provider::Generic
        }
    }
}

/// What `discover` writes: the TOML block (stdout) and the operator's notes (stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The provider recognised.
    pub provider: Provider,
    /// The `[[issuer]]` block, ready to paste into a config.
    pub toml: String,
    /// What the operator must still do.
    pub todo: Vec<String>,
    /// What looks wrong or needs care.
    pub warnings: Vec<String>,
}

/// Why discovery failed; each is one line (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// `ISSUER_URL` is not an `http(s)://` URL.
    #[error("{0}: not an http:// or https:// URL")]
    BadUrl(String),
    /// The request failed (DNS, connect, TLS, timeout).
    #[error("{url}: unreachable: {reason}")]
    Unreachable {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// A status other than 2xx.
    #[error("{url}: answered {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The status.
        status: u16,
    },
    /// Not a JSON object (or too large).
    #[error("{url}: not a JSON document: {reason}")]
    NotJson {
        /// What was fetched.
        url: String,
        /// Why not.
        reason: String,
    },
    /// The document's `issuer` is not the URL asked for (Discovery §4.3).
    #[error("issuer mismatch: asked for {asked}, the discovery document says {found:?}")]
    IssuerMismatch {
        /// The URL given.
        asked: String,
        /// The document's `issuer`.
        found: String,
    },
    /// The document has no `jwks_uri`.
    #[error("{0}: the discovery document has no jwks_uri")]
    NoJwksUri(String),
}

/// Options of the command.
#[derive(Debug, Clone, Default)]
pub struct DiscoverOptions {
    /// `--client-id`: the client whose logout tokens the gateway receives.
    pub client_id: Option<String>,
    /// `--audience`: the `aud` of the access tokens the gateway accepts.
    pub audience: Option<String>,
}

/// Fetches `ISSUER_URL/.well-known/openid-configuration` and its JWKS and renders them.
pub async fn discover(
    issuer_url: &str,
    options: &DiscoverOptions,
) -> Result<Discovered, DiscoverError> {
    if !(issuer_url.starts_with("https://") || issuer_url.starts_with("http://")) {
        return Err(DiscoverError::BadUrl(issuer_url.to_string()));
    }
    let http = reqwest::Client::builder()
        .timeout(DISCOVER_TIMEOUT)
        .connect_timeout(DISCOVER_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("revgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client with static settings");
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer_url.trim_end_matches('/')
    );
    let doc = fetch_json(&http, &url).await?;
    let found = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    // Discovery §4.3: identical to the URL used. A missing or extra trailing slash is the
    // usual typo; the block then carries the document's exact value (tokens' `iss`).
    if found.trim_end_matches('/') != issuer_url.trim_end_matches('/') {
        return Err(DiscoverError::IssuerMismatch {
            asked: issuer_url.to_string(),
            found: found.to_string(),
        });
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| DiscoverError::NoJwksUri(url.clone()))?;
    let jwks = fetch_json(&http, jwks_uri).await?;
    Ok(render(&doc, &jwks, options))
}

/// GETs `url` as a JSON object of at most [`MAX_DOCUMENT_BYTES`].
async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, DiscoverError> {
    let unreachable = |e: reqwest::Error| DiscoverError::Unreachable {
        url: url.to_string(),
        reason: root_cause(&e),
    };
    let mut resp = http
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(unreachable)?;
    if !resp.status().is_success() {
        return Err(DiscoverError::Status {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    let not_json = |reason: String| DiscoverError::NotJson {
        url: url.to_string(),
        reason,
    };
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(not_json(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(not_json("not an object".to_string())),
        Err(e) => Err(not_json(e.to_string())),
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Signature algorithms revgate verifies with JWKS keys (never HMAC, never `none`).
const ASYMMETRIC: [&str; 10] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "Ed25519",
];

/// The algorithms the keys of `jwks` can verify: a key's own `alg`, or every algorithm of
/// its type and curve when it names none. Encryption-only keys are left out.
fn key_algorithms(jwks: &Value) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    for key in jwks
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| key.get(k).and_then(Value::as_str);
        if s("use").is_some_and(|u| u != "sig") {
            continue;
        }
        if let Some(alg) = s("alg") {
            if let Some(known) = ASYMMETRIC.iter().find(|a| **a == alg) {
                out.insert(if *known == "Ed25519" { "EdDSA" } else { known });
            }
            continue;
        }
        match (s("kty"), s("crv")) {
            (Some("RSA"), _) => {
                out.extend(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]);
            }
            (Some("EC"), Some("P-256")) => {
                out.insert("ES256");
            }
            (Some("EC"), Some("P-384")) => {
                out.insert("ES384");
            }
            (Some("OKP"), Some("Ed25519")) => {
                out.insert("EdDSA");
            }
            _ => {}
        }
    }
    out
}

/// The algorithms to allow: what the provider advertises for ID tokens that its keys can
/// verify, in the provider's order; with nothing advertised, what the keys declare.
fn allowed_algorithms(doc: &Value, jwks: &Value) -> Vec<String> {
    let keys = key_algorithms(jwks);
    let advertised: Vec<&str> = doc
        .get("id_token_signing_alg_values_supported")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let from_doc: Vec<String> = advertised
        .iter()
        .filter(|a| keys.contains(**a))
        .map(|a| a.to_string())
        .collect();
    if !from_doc.is_empty() || !advertised.is_empty() {
        return from_doc;
    }
    // Nothing advertised: only algorithms a key names itself (a bare RSA key could be
    // used with six; listing them all would be a wider allow-list than anyone needs).
    jwks.get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|k| k.get("alg").and_then(Value::as_str))
        .filter(|a| keys.contains(*a))
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn toml_string(s: &str) -> String {
    // TOML basic strings escape like JSON for what matters here (quotes, backslashes,
    // control characters).
    serde_json::Value::String(s.to_string()).to_string()
}

fn toml_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// The `[[issuer]]` block and notes for a discovery document and its JWKS.
pub fn render(doc: &Value, jwks: &Value, options: &DiscoverOptions) -> Discovered {
    let provider = Provider::detect(doc);
    let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("");
    let issuer = s("issuer");
    let mut todo = Vec::new();
    let mut warnings = Vec::new();

    let mut algorithms = allowed_algorithms(doc, jwks);
    if algorithms.is_empty() {
        warnings.push(
            "no advertised signing algorithm matches a key in the JWKS: set `algorithms` by hand"
                .to_string(),
        );
        algorithms.push("RS256".to_string());
    }

    let bcl_supported = doc
        .get("backchannel_logout_supported")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let bcl_session = doc
        .get("backchannel_logout_session_supported")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    // Provider facts (STANDARDS.md §7; README "Connect your identity provider").
    let mut session_claim = ("sid".to_string(), String::new());
    let mut require_typ = (String::new(), String::new());
    let mut require_exp = (true, String::new());
    let mut notes: Vec<String> = Vec::new();
    let mut sid_in_access_tokens = true;
    match provider {
        Provider::Keycloak => {
            session_claim.1 =
                "Keycloak puts the user-session id in `sid` of access, ID and logout tokens".into();
            require_typ.1 = "Keycloak sends `typ: JWT` unless the client's \"use RFC 9068 access-token header type\" is on; then set \"at+jwt\"".into();
            require_exp.1 = "Keycloak before 22.0.x (and its 23.0.x backports) sends logout tokens without exp: set false for those releases".into();
            notes.push("Keycloak before 25 sends logout tokens with `typ: JWT` (accepted unless backchannel.strict_typ = true); 25 and later send `logout+jwt`".into());
            notes.push("Keycloak sends `sid` in logout tokens only when the client's \"Backchannel logout session required\" is on".into());
            todo.push("in Keycloak, set the Backchannel logout URL of EVERY client whose tokens pass the gateway, and turn on \"Backchannel logout session required\"".into());
        }
        Provider::Auth0 => {
            session_claim = (
                "sid".into(),
                "Auth0 access tokens carry no `sid` (a restricted claim name): add a namespaced claim from event.session.id in a post-login Action and name it here, e.g. \"https://example.com/sid\"".into(),
            );
            sid_in_access_tokens = false;
            require_typ.1 = "Auth0 sends `typ: at+jwt` only with the \"RFC 9068\" access-token profile; then set \"at+jwt\"".into();
            require_exp.1 = "Auth0's own SDKs require only iat: if its logout tokens are refused with \"missing exp\", set false".into();
            notes.push("Auth0's default access tokens have no `jti`: revgate identifies them by the digest of their signing input".into());
            todo.push("in Auth0 (Enterprise), set the application's Back-Channel Logout URI; it must be https and not a private or loopback address".into());
        }
        Provider::Okta => {
            sid_in_access_tokens = false;
            notes.push(
                "Okta access tokens have `jti` (AT.…) but no `sid`, and no `typ` header".into(),
            );
            warnings.push("Okta does not send OpenID Connect Back-Channel Logout: sessions cannot end at the gateway from the IdP; revoke tokens through /revoke or the admin API".into());
        }
        Provider::EntraId => {
            sid_in_access_tokens = false;
            notes.push("Entra ID access tokens carry `uti`, not `jti`: revgate identifies them by the digest of their signing input".into());
            notes.push("tokens for Microsoft Graph cannot be verified by anyone but Graph: put only your own API's audience (its Application ID URI or client id) in `audiences`".into());
            warnings.push("Microsoft Entra ID does not send OpenID Connect Back-Channel Logout (front-channel only): revoke tokens through /revoke or the admin API".into());
        }
        Provider::LemonLdap => {
            require_typ = (
                "at+jwt".into(),
                "LemonLDAP::NG's ID tokens carry the same extra audience as its access tokens; its JWT access tokens have `typ: at+JWT`, which tells them apart".into(),
            );
            require_exp = (
                false,
                "LemonLDAP::NG's logout tokens carry no exp (older than errata set 1)".into(),
            );
            notes.push("LemonLDAP::NG signs logout tokens with the client's access-token algorithm and sends `typ: JWT` and short (8-character) jtis".into());
            todo.push("in LemonLDAP::NG, enable JWT access tokens for the client and set its back-channel logout URI".into());
        }
        Provider::OidcProvider => {
            require_typ = (
                "at+jwt".into(),
                "oidc-provider issues RFC 9068 JWT access tokens (`typ: at+jwt`) when its access-token format is jwt".into(),
            );
            notes.push("oidc-provider sends `typ: logout+jwt` logout tokens with exp".into());
        }
        Provider::Generic => {}
    }

    if !bcl_supported {
        warnings.push(format!(
            "the discovery document does not say backchannel_logout_supported: {} may not send logout tokens",
            provider.name()
        ));
    } else if !bcl_session {
        warnings.push("backchannel_logout_session_supported is not true: logout tokens may carry only sub (the whole subject is then revoked)".to_string());
    }
    if !sid_in_access_tokens {
        warnings.push(format!(
            "{} access tokens carry no sid: a session revoked by a logout token only matches tokens that have the session claim",
            provider.name()
        ));
    }

    let audiences = match &options.audience {
        Some(a) => vec![a.clone()],
        None => {
            todo.push("pick the audience: the `aud` your API's access tokens carry (--audience), and put it in `audiences`".to_string());
            vec!["<your API's audience>".to_string()]
        }
    };
    let logout_audiences = match &options.client_id {
        Some(c) => vec![c.clone()],
        None => {
            todo.push("pass --client-id (or fill in `logout_audiences`): logout tokens are addressed to the client, and an issuer without logout_audiences has its logout tokens refused".to_string());
            Vec::new()
        }
    };
    warnings.extend(crate::config::audience_overlap_warning(
        &audiences,
        &logout_audiences,
        &require_typ.0,
    ));
    todo.insert(
        0,
        "register https://<your gateway>/backchannel-logout (backchannel.path) as the client's back-channel logout URI at the provider".to_string(),
    );

    let mut out = String::new();
    let comment = |out: &mut String, text: &str| {
        for line in textwrap(text, 88) {
            out.push_str("# ");
            out.push_str(&line);
            out.push('\n');
        }
    };
    out.push_str(&format!(
        "# {}: written by revgate discover from {}/.well-known/openid-configuration\n",
        provider.name(),
        issuer.trim_end_matches('/')
    ));
    for note in &notes {
        comment(&mut out, note);
    }
    out.push_str("[[issuer]]\n");
    out.push_str(&format!("issuer = {}\n", toml_string(issuer)));
    out.push_str(&format!("audiences = {}\n", toml_list(&audiences)));
    out.push_str(&format!("jwks_url = {}\n", toml_string(s("jwks_uri"))));
    out.push_str(&format!("algorithms = {}\n", toml_list(&algorithms)));
    if !session_claim.1.is_empty() {
        comment(&mut out, &session_claim.1);
    }
    out.push_str(&format!(
        "session_claim = {}\n",
        toml_string(&session_claim.0)
    ));
    if !require_typ.1.is_empty() {
        comment(&mut out, &require_typ.1);
    }
    out.push_str(&format!("require_typ = {}\n", toml_string(&require_typ.0)));
    out.push_str(&format!(
        "logout_audiences = {}\n",
        toml_list(&logout_audiences)
    ));
    comment(
        &mut out,
        "logout tokens are signed with the provider's own keys: the same algorithms",
    );
    out.push_str(&format!("logout_algorithms = {}\n", toml_list(&algorithms)));
    if !require_exp.1.is_empty() {
        comment(&mut out, &require_exp.1);
    }
    out.push_str(&format!("logout_require_exp = {}\n", require_exp.0));

    Discovered {
        provider,
        toml: out,
        todo,
        warnings,
    }
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests;
