//! `render` on the discovery documents of each known provider (fixtures written from their
//! published documents, trimmed to the members revgate reads): the block must be a config
//! `check-config` accepts, with the provider's quirks set.

use super::*;
use serde_json::json;

fn rsa_key(kid: &str, alg: Option<&str>) -> Value {
    let mut k = json!({"kty": "RSA", "kid": kid, "use": "sig", "n": "AQAB", "e": "AQAB"});
    if let Some(a) = alg {
        k["alg"] = json!(a);
    }
    k
}

fn options(client: Option<&str>, audience: Option<&str>) -> DiscoverOptions {
    DiscoverOptions {
        client_id: client.map(str::to_string),
        audience: audience.map(str::to_string),
    }
}

/// The block inside a minimal config, parsed and validated like `check-config` does.
fn parse_block(block: &str) -> crate::config::Config {
    let text =
        format!("{block}\n[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n");
    crate::config::Config::parse(&text, |_| None)
        .unwrap_or_else(|e| panic!("block does not parse: {e}\n{block}"))
}

fn keycloak() -> Value {
    json!({
        "issuer": "https://sso.example.com/realms/shop",
        "jwks_uri": "https://sso.example.com/realms/shop/protocol/openid-connect/certs",
        "token_endpoint": "https://sso.example.com/realms/shop/protocol/openid-connect/token",
        "id_token_signing_alg_values_supported": ["PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "RS256", "HS384", "ES512", "PS256", "PS512", "RS512", "EdDSA"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true
    })
}

/// Auth0's document (a tenant's, trimmed) and keys.
fn auth0() -> (Value, Value) {
    let doc = json!({
        "issuer": "https://tenant.eu.auth0.com/",
        "jwks_uri": "https://tenant.eu.auth0.com/.well-known/jwks.json",
        "id_token_signing_alg_values_supported": ["HS256", "RS256", "PS256"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "mfa_challenge_endpoint": "https://tenant.eu.auth0.com/mfa/challenge"
    });
    let jwks = json!({"keys": [rsa_key("a", Some("RS256")), rsa_key("b", Some("RS256"))]});
    (doc, jwks)
}

/// LemonLDAP::NG's document (2.21, trimmed) and keys.
fn lemonldap() -> (Value, Value) {
    let doc = json!({
        "issuer": "https://auth.example.org/",
        "jwks_uri": "https://auth.example.org/oauth2/jwks",
        "check_session_iframe": "https://auth.example.org/oauth2/checksession.html",
        "end_session_endpoint": "https://auth.example.org/oauth2/logout",
        "id_token_signing_alg_values_supported": ["none", "HS256", "RS256", "RS384", "RS512", "PS256", "ES256", "EdDSA"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true
    });
    let jwks = json!({"keys": [rsa_key("llng", None)]});
    (doc, jwks)
}

/// A document of Okta or Entra ID at `issuer` (neither advertises back-channel logout).
fn no_bcl(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/keys"),
        "id_token_signing_alg_values_supported": ["RS256"]
    })
}

#[test]
fn keycloak_block_is_valid_and_keeps_only_what_its_keys_verify() {
    let jwks = json!({"keys": [rsa_key("k1", Some("RS256")), {"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"}]});
    let d = render(
        &keycloak(),
        &jwks,
        &options(Some("shop-web"), Some("shop-api")),
    );
    assert_eq!(d.provider, Provider::Keycloak);
    let config = parse_block(&d.toml);
    let ic = &config.issuers[0];
    assert_eq!(ic.issuer, "https://sso.example.com/realms/shop");
    assert_eq!(
        ic.algorithms,
        ["RS256"],
        "only the key's own alg; HS* never"
    );
    assert_eq!(ic.logout_algorithms, ["RS256"]);
    assert_eq!(ic.audiences, ["shop-api"]);
    assert_eq!(ic.logout_audiences, ["shop-web"]);
    assert_eq!(ic.session_claim, "sid");
    assert!(ic.logout_require_exp);
    assert!(d.toml.contains("Keycloak before 22.0.x"), "{}", d.toml);
    assert!(d.todo.iter().any(|t| t.contains("/backchannel-logout")));
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn keys_without_alg_allow_what_is_advertised_for_their_type() {
    let jwks = json!({"keys": [rsa_key("r", None), {"kty": "EC", "crv": "P-256", "kid": "e", "x": "x", "y": "y"}]});
    let d = render(&keycloak(), &jwks, &options(Some("c"), Some("a")));
    let config = parse_block(&d.toml);
    assert_eq!(
        config.issuers[0].algorithms,
        ["PS384", "RS384", "ES256", "RS256", "PS256", "PS512", "RS512"],
        "advertised order; no ES384/ES512 (no such key), no HS*, no EdDSA"
    );
}

#[test]
fn auth0_needs_a_namespaced_session_claim_and_warns() {
    let (doc, jwks) = auth0();
    let d = render(
        &doc,
        &jwks,
        &options(Some("client"), Some("https://api.example.com")),
    );
    assert_eq!(d.provider, Provider::Auth0);
    let config = parse_block(&d.toml);
    assert_eq!(config.issuers[0].issuer, "https://tenant.eu.auth0.com/");
    assert_eq!(config.issuers[0].algorithms, ["RS256"]);
    assert!(d.toml.contains("event.session.id"), "{}", d.toml);
    assert!(
        d.warnings.iter().any(|w| w.contains("carry no sid")),
        "{:?}",
        d.warnings
    );
}

#[test]
fn lemonldap_sets_its_quirks() {
    let (doc, jwks) = lemonldap();
    let d = render(&doc, &jwks, &options(Some("app"), Some("app")));
    assert_eq!(d.provider, Provider::LemonLdap);
    let ic = parse_block(&d.toml).issuers[0].clone();
    assert_eq!(ic.require_typ, "at+jwt");
    assert!(!ic.logout_require_exp, "LemonLDAP::NG sends no exp");
    assert_eq!(ic.algorithms, ["RS256", "RS384", "RS512", "PS256"]);
    assert_eq!(
        ic.logout_algorithms, ic.algorithms,
        "access-token algorithm too"
    );
    // Same audience for API and client, but require_typ tells ID and access tokens apart.
    assert!(
        !d.warnings.iter().any(|w| w.contains("overlap")),
        "{:?}",
        d.warnings
    );
}

#[test]
fn overlapping_audiences_without_typ_and_missing_options_are_reported() {
    let doc = json!({
        "issuer": "https://op.example.net",
        "jwks_uri": "https://op.example.net/keys",
        "id_token_signing_alg_values_supported": ["ES256"]
    });
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "e", "alg": "ES256", "x": "x", "y": "y"}]});
    let d = render(&doc, &jwks, &options(Some("same"), Some("same")));
    assert_eq!(d.provider, Provider::Generic);
    assert!(
        d.warnings.iter().any(|w| w.contains("overlap")),
        "{:?}",
        d.warnings
    );
    assert!(d
        .warnings
        .iter()
        .any(|w| w.contains("backchannel_logout_supported")));
    let d = render(&doc, &jwks, &options(None, None));
    let ic = parse_block(&d.toml).issuers[0].clone();
    assert!(ic.logout_audiences.is_empty());
    assert!(d.todo.iter().any(|t| t.contains("--client-id")));
    assert!(d.todo.iter().any(|t| t.contains("--audience")));
}

#[test]
fn okta_and_entra_say_they_send_no_logout_tokens() {
    for (issuer, provider) in [
        ("https://dev-1.okta.com/oauth2/default", Provider::Okta),
        (
            "https://login.microsoftonline.com/0f4c/v2.0",
            Provider::EntraId,
        ),
    ] {
        let doc = no_bcl(issuer);
        let d = render(
            &doc,
            &json!({"keys": [rsa_key("k", None)]}),
            &options(Some("c"), Some("a")),
        );
        assert_eq!(d.provider, provider);
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("does not send OpenID Connect Back-Channel Logout")),
            "{provider:?}: {:?}",
            d.warnings
        );
        parse_block(&d.toml);
    }
}

#[test]
fn no_usable_algorithm_falls_back_with_a_warning() {
    let doc = json!({
        "issuer": "https://op.example.net",
        "jwks_uri": "https://op.example.net/keys",
        "id_token_signing_alg_values_supported": ["HS256"]
    });
    let d = render(&doc, &json!({"keys": []}), &options(Some("c"), Some("a")));
    assert!(d
        .warnings
        .iter()
        .any(|w| w.contains("set `algorithms` by hand")));
    assert_eq!(parse_block(&d.toml).issuers[0].algorithms, ["RS256"]);
}

#[test]
fn strings_are_quoted_for_toml() {
    let doc = json!({
        "issuer": "https://op.example.net/\"x\\",
        "jwks_uri": "https://op.example.net/keys",
        "id_token_signing_alg_values_supported": ["RS256"]
    });
    let d = render(
        &doc,
        &json!({"keys": [rsa_key("k", None)]}),
        &options(Some("c\"1"), Some("a")),
    );
    let config = parse_block(&d.toml);
    assert_eq!(config.issuers[0].issuer, "https://op.example.net/\"x\\");
    assert_eq!(config.issuers[0].logout_audiences, ["c\"1"]);
}

/// The providers of README "Connect your identity provider", each with the command line
/// shown there: `(heading, ISSUER_URL, --client-id, --audience, document, keys)`.
fn readme_providers() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Value,
    Value,
)> {
    let (auth0_doc, auth0_keys) = auth0();
    let (llng_doc, llng_keys) = lemonldap();
    let rsa = || json!({"keys": [rsa_key("k1", Some("RS256"))]});
    vec![
        (
            "Keycloak",
            "https://sso.example.com/realms/shop",
            "shop-web",
            "shop-api",
            keycloak(),
            rsa(),
        ),
        (
            "Auth0",
            "https://tenant.eu.auth0.com/",
            "YOUR_CLIENT_ID",
            "https://api.example.com",
            auth0_doc,
            auth0_keys,
        ),
        (
            "Okta",
            "https://dev-1.okta.com/oauth2/default",
            "0oa1client",
            "api://default",
            no_bcl("https://dev-1.okta.com/oauth2/default"),
            rsa(),
        ),
        (
            "Microsoft Entra ID",
            "https://login.microsoftonline.com/0f4c/v2.0",
            "6e2b-client",
            "api://shop-api",
            no_bcl("https://login.microsoftonline.com/0f4c/v2.0"),
            rsa(),
        ),
        (
            "LemonLDAP::NG",
            "https://auth.example.org/",
            "shop-web",
            "shop-api",
            llng_doc,
            llng_keys,
        ),
        (
            "Any OpenID Provider",
            "https://op.example.com",
            "my-client-id",
            "https://api.example.com",
            json!({
                "issuer": "https://op.example.com",
                "jwks_uri": "https://op.example.com/certs",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "backchannel_logout_supported": true,
                "backchannel_logout_session_supported": true
            }),
            json!({"keys": [rsa_key("r", Some("RS256")), {"kty": "EC", "crv": "P-256", "kid": "e", "alg": "ES256", "x": "x", "y": "y"}]}),
        ),
    ]
}

/// What `revgate discover` writes for one provider: the command, stdout, stderr.
fn cli_transcript(
    url: &str,
    client: &str,
    audience: &str,
    d: &Discovered,
) -> (String, String, String) {
    let command = format!("revgate discover {url} --client-id {client} --audience {audience}");
    let mut stderr = format!("revgate discover: {} at {url}\n", d.provider.name());
    for t in &d.todo {
        stderr.push_str(&format!("to do: {t}\n"));
    }
    for w in &d.warnings {
        stderr.push_str(&format!("warning: {w}\n"));
    }
    (command, d.toml.clone(), stderr)
}

#[test]
fn the_readme_recipes_show_what_discover_prints() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (heading, url, client, audience, doc, jwks) in readme_providers() {
        let d = render(&doc, &jwks, &options(Some(client), Some(audience)));
        parse_block(&d.toml);
        let (command, stdout, stderr) = cli_transcript(url, client, audience, &d);
        if std::env::var_os("REVGATE_PRINT_RECIPES").is_some() {
            println!("### {heading}\n\n```sh\n$ {command}\n```\n\n```toml\n{stdout}```\n\n```\n{stderr}```\n");
            continue;
        }
        let section = readme
            .split("\n### ")
            .find(|s| s.starts_with(heading))
            .unwrap_or_else(|| panic!("README has no \"### {heading}\" recipe"));
        for (what, text) in [
            ("command", format!("$ {command}\n")),
            ("TOML", format!("```toml\n{stdout}```\n")),
            ("stderr", format!("```\n{stderr}```\n")),
        ] {
            assert!(
                section.contains(&text),
                "README \"### {heading}\": the {what} is not what discover prints; it prints:\n{text}\n(REVGATE_PRINT_RECIPES=1 cargo test --lib readme -- --nocapture prints every recipe)"
            );
        }
    }
}
