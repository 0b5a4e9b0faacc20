//! The configuration reference, `data/revgate.example.toml`, against the configuration the
//! gateway really accepts, so the two cannot drift:
//!
//! - the file is a valid configuration (checked as `check-config` checks it);
//! - every key the loader accepts — read from the config types' own serde field lists, so
//!   a key added to a struct is seen here without touching this test — appears in it, in
//!   its section, set or commented out (`# key = ...`), under a comment that explains it
//!   and ends its block with `# default: <value>` giving the real default (from an
//!   otherwise empty configuration), `# default: unset` for optional keys without one, or
//!   `# required (no default)`;
//! - the file names no key the loader does not know.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use revgate::config::{
    AuthConfig, BackchannelConfig, ClusterConfig, Config, IssuerConfig, RevokeEndpointConfig,
    RouteConfig, ServerConfig, StoreConfig,
};
use serde::de::{self, Deserialize, Deserializer, Visitor};

const REFERENCE: &str = "data/revgate.example.toml";

/// A deserializer that records the field names a derived `Deserialize` asks for (serde
/// hands them to `deserialize_struct`) and then refuses: the exact keys the loader accepts.
struct FieldNames<'a>(&'a mut Vec<&'static str>);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The keys `T`'s `Deserialize` accepts.
fn fields<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
    let mut names = Vec::new();
    let _ = T::deserialize(FieldNames(&mut names));
    assert!(
        !names.is_empty(),
        "{} is not a struct",
        std::any::type_name::<T>()
    );
    names
}

/// Every section of the configuration with its keys, from the types.
fn schema() -> BTreeMap<&'static str, Vec<&'static str>> {
    fields::<Config>()
        .into_iter()
        .map(|section| {
            let keys = match section {
                "server" => fields::<ServerConfig>(),
                "issuer" => fields::<IssuerConfig>(),
                "auth" => fields::<AuthConfig>(),
                "route" => fields::<RouteConfig>(),
                "backchannel" => fields::<BackchannelConfig>(),
                "revoke_endpoint" => fields::<RevokeEndpointConfig>(),
                "store" => fields::<StoreConfig>(),
                "cluster" => fields::<ClusterConfig>(),
                other => panic!(
                    "Config has a new section [{other}]: name its type here and document \
                     every key of it in {REFERENCE}"
                ),
            };
            (section, keys)
        })
        .collect()
}

/// The smallest valid configuration: only the keys that have no default.
const REQUIRED_ONLY: &str = r#"
[[issuer]]
issuer = "https://i.example/"
audiences = ["a"]
jwks_url = "https://i.example/jwks"

[[route]]
upstream = "http://127.0.0.1:1"
"#;

/// What a documented default is checked against.
#[derive(Debug, Clone, PartialEq)]
enum Default {
    /// The key's value when left out.
    Value(toml::Value),
    /// Optional, and unset when left out.
    Unset,
    /// Must be given.
    Required,
}

/// The real default of every key: the effective settings of [`REQUIRED_ONLY`]
/// (serialised as `check-config` prints them); the keys that file sets are required; an
/// optional key left out of the serialisation is unset.
fn real_defaults(
    schema: &BTreeMap<&'static str, Vec<&'static str>>,
) -> BTreeMap<(String, String), Default> {
    let config = Config::parse(REQUIRED_ONLY, |_| None).expect("the minimal config is valid");
    let effective: toml::Table = toml::from_str(&config.effective_toml()).unwrap();
    let given: toml::Table = toml::from_str(REQUIRED_ONLY).unwrap();
    let table_of = |t: &toml::Table, section: &str| -> toml::Table {
        match t.get(section) {
            Some(toml::Value::Table(t)) => t.clone(),
            Some(toml::Value::Array(a)) => a[0].as_table().unwrap().clone(),
            _ => toml::Table::new(),
        }
    };
    let mut out = BTreeMap::new();
    for (section, keys) in schema {
        let eff = table_of(&effective, section);
        let giv = table_of(&given, section);
        for key in keys {
            let d = if giv.contains_key(*key) {
                Default::Required
            } else {
                match eff.get(*key) {
                    Some(v) => Default::Value(v.clone()),
                    None => Default::Unset,
                }
            };
            out.insert((section.to_string(), key.to_string()), d);
        }
    }
    out
}

/// One key as the reference documents it.
#[derive(Debug)]
struct Documented {
    line: usize,
    default: Default,
    meaning_lines: usize,
}

/// Two values are the same default: equal, or two durations of the same length (the
/// effective settings write 60s as "1m").
fn same(a: &toml::Value, b: &toml::Value) -> bool {
    if a == b {
        return true;
    }
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => match (humantime::parse_duration(x), humantime::parse_duration(y)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
        _ => false,
    }
}

/// Reads the reference: for each `(section, key)` its first occurrence (in the first table
/// of an array section), set or commented out, with the comment block above it. Problems
/// (a key line without a default line, two default lines, a key the schema lacks) are
/// pushed to `errors`.
fn documented(
    text: &str,
    schema: &BTreeMap<&'static str, Vec<&'static str>>,
    errors: &mut Vec<String>,
) -> BTreeMap<(String, String), Documented> {
    let mut out = BTreeMap::new();
    let mut section = String::new();
    let mut seen_tables: BTreeSet<String> = BTreeSet::new();
    let mut first_table = true;
    let mut block: Vec<&str> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            block.clear();
            continue;
        }
        if line.starts_with('[') {
            let name = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            first_table = seen_tables.insert(name.clone());
            if !schema.contains_key(name.as_str()) {
                errors.push(format!(
                    "line {n}: [{name}] is not a section of the configuration"
                ));
            }
            section = name;
            block.clear();
            continue;
        }
        // A key line: `key = value`, or commented out `# key = value`.
        let (commented, body) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        let key = body
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        let known = |k: &str| {
            schema
                .get(section.as_str())
                .is_some_and(|keys| keys.contains(&k))
        };
        match key {
            Some(key) if !commented || known(key) => {
                if !known(key) {
                    errors.push(format!(
                        "line {n}: {section}.{key} is not a key the loader accepts"
                    ));
                }
                if first_table && !out.contains_key(&(section.clone(), key.to_string())) {
                    let mut defaults = Vec::new();
                    let mut meaning = 0;
                    for c in &block {
                        let c = c.trim_start_matches('#').trim();
                        if let Some(v) = c.strip_prefix("default: ") {
                            let d = if v == "unset" {
                                Some(Default::Unset)
                            } else {
                                toml::from_str::<toml::Table>(&format!("v = {v}"))
                                    .ok()
                                    .and_then(|t| t.get("v").cloned())
                                    .map(Default::Value)
                            };
                            match d {
                                Some(d) => defaults.push(d),
                                None => errors.push(format!(
                                    "line {n}: {section}.{key}: default {v:?} is not a TOML value"
                                )),
                            }
                        } else if c.starts_with("required (no default)") {
                            defaults.push(Default::Required);
                        } else if !c.is_empty() {
                            meaning += 1;
                        }
                    }
                    match defaults.as_slice() {
                        [d] => {
                            out.insert(
                                (section.clone(), key.to_string()),
                                Documented {
                                    line: n,
                                    default: d.clone(),
                                    meaning_lines: meaning,
                                },
                            );
                        }
                        [] => errors.push(format!(
                            "line {n}: {section}.{key} has no \"# default: ...\" (or \"# required (no default)\") line above it"
                        )),
                        _ => errors.push(format!("line {n}: {section}.{key} has several default lines")),
                    }
                }
                // A commented-out key ends its block; a set one too.
                block.clear();
            }
            _ => block.push(raw),
        }
    }
    out
}

/// Every problem of the reference `text` against the real schema and defaults.
fn problems(text: &str) -> Vec<String> {
    let schema = schema();
    let defaults = real_defaults(&schema);
    let mut errors = Vec::new();
    let docs = documented(text, &schema, &mut errors);
    for ((section, key), real) in &defaults {
        let Some(doc) = docs.get(&(section.clone(), key.clone())) else {
            errors.push(format!("{section}.{key} is not in {REFERENCE}"));
            continue;
        };
        let matches = match (&doc.default, real) {
            (Default::Value(a), Default::Value(b)) => same(a, b),
            (a, b) => a == b,
        };
        if !matches {
            errors.push(format!(
                "line {}: {section}.{key} documents default {:?}, the real one is {real:?}",
                doc.line, doc.default
            ));
        }
        if doc.meaning_lines == 0 {
            errors.push(format!(
                "line {}: {section}.{key} has no explanation",
                doc.line
            ));
        }
    }
    errors
}

fn reference_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(REFERENCE)).unwrap()
}

#[test]
fn every_key_is_documented_with_its_real_default() {
    let errors = problems(&reference_text());
    assert!(
        errors.is_empty(),
        "{REFERENCE} is out of date:\n{}",
        errors.join("\n")
    );
    // The schema really was read from the types (a broken probe would find nothing).
    let defaults = real_defaults(&schema());
    assert!(defaults.len() >= 37, "{defaults:?}");
    assert_eq!(
        defaults[&("auth".to_string(), "leeway".to_string())],
        Default::Value(toml::Value::String("1m".into()))
    );
    assert_eq!(
        defaults[&("issuer".to_string(), "jwks_file".to_string())],
        Default::Unset
    );
    assert_eq!(
        defaults[&("route".to_string(), "upstream".to_string())],
        Default::Required
    );
}

#[test]
fn the_reference_is_a_valid_configuration() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(REFERENCE);
    let config = revgate::reload::check_file(&path)
        .unwrap_or_else(|e| panic!("{REFERENCE} does not pass check-config: {e}"));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    // The README's install step edits this exact line.
    assert!(
        reference_text().lines().any(|l| l == "admin_token  = \"\""),
        "README \"Run on a VM\" step 3"
    );
}

#[test]
fn the_checker_finds_drift() {
    let text = reference_text();
    // A wrong default, a missing default line, a missing key, an unknown key: each found.
    let wrong = text.replacen("# default: 16384\n", "# default: 8192\n", 1);
    let no_default = text.replacen("# default: \"5m\"\n", "", 1);
    let missing = text.replacen("strip_prefix = false\n", "", 1);
    let unknown = text.replacen(
        "[store]\n",
        "[store]\n# Nothing.\n# default: 1\nbogus = 1\n",
        1,
    );
    let unexplained = text.replacen(
        "# sled's page cache, in bytes. At least 1048576 (1 MiB).\n",
        "",
        1,
    );
    for (what, variant, needle) in [
        (
            "wrong default",
            wrong,
            "server.max_header_bytes documents default",
        ),
        (
            "no default line",
            no_default,
            "backchannel.max_age has no \"# default",
        ),
        ("missing key", missing, "route.strip_prefix is not in"),
        ("unknown key", unknown, "store.bogus is not a key"),
        (
            "no explanation",
            unexplained,
            "store.cache_bytes has no explanation",
        ),
    ] {
        assert_ne!(variant, text, "{what}: the edit applies");
        let errors = problems(&variant);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{what}: {needle:?} not in {errors:#?}"
        );
    }
}
