//! `REVGATE_*` variables that no setting reads: a typo (`REVGATE_SERVER_LISTN`) or a
//! variable of another release would otherwise be ignored without a word, and the gateway
//! would run with a setting the operator believes changed. Every command reports them
//! (serve and demo in their log, the others on stderr), and keeps going.

use std::ffi::OsString;

use super::client::ADMIN_URL_ENV;
use super::config_file::CONFIG_ENV;
use crate::config::{env_var_name, override_variables, ADMIN_TOKEN_ENV};

/// Prefix of the variables revgate owns.
const PREFIX: &str = "REVGATE_";

/// Largest edit distance at which a known variable is suggested for an unknown one.
const MAX_SUGGESTION_DISTANCE: usize = 3;

/// Every variable revgate reads: the config overrides (`REVGATE_<SECTION>_<KEY>`,
/// `REVGATE_ADMIN_TOKEN`) and the command line's own.
fn known_variables() -> Vec<String> {
    let mut known = override_variables();
    known.extend([CONFIG_ENV.to_string(), ADMIN_URL_ENV.to_string()]);
    known
}

/// One warning per `REVGATE_*` variable of `vars` that revgate does not read (with the
/// nearest known name when one is close), and one when the two admin-token variables
/// disagree.
pub fn environment_warnings(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<String> {
    let known = known_variables();
    let mut warnings = Vec::new();
    let mut admin_token = None;
    let mut server_admin_token = None;
    let server_admin_token_var = env_var_name("server", "admin_token");
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(PREFIX) {
            continue;
        }
        if name == ADMIN_TOKEN_ENV {
            admin_token = Some(value.clone());
        }
        if name == server_admin_token_var {
            server_admin_token = Some(value.clone());
        }
        if known.iter().any(|k| k == name) {
            continue;
        }
        let nearest = known
            .iter()
            .map(|k| (edit_distance(name, k), k))
            .filter(|(d, _)| *d <= MAX_SUGGESTION_DISTANCE)
            .min();
        warnings.push(match nearest {
            Some((_, k)) => format!(
                "environment variable {name} is not a revgate setting and is ignored (did you mean {k}?)"
            ),
            None => format!(
                "environment variable {name} is not a revgate setting and is ignored"
            ),
        });
    }
    if let (Some(a), Some(b)) = (&admin_token, &server_admin_token) {
        if !a.is_empty() && a != b {
            warnings.push(format!(
                "{ADMIN_TOKEN_ENV} and {server_admin_token_var} differ: serve uses \
                 {server_admin_token_var}, the admin commands send {ADMIN_TOKEN_ENV}; set only \
                 {ADMIN_TOKEN_ENV}"
            ));
        }
    }
    warnings
}

/// Levenshtein distance of two ASCII-ish names (by bytes: variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn unknown_revgate_variables_are_reported_with_a_suggestion() {
        let w = environment_warnings(vars(&[
            ("PATH", "/bin"),
            ("REVGATE_SERVER_LISTEN", "127.0.0.1:1"),
            ("REVGATE_CONFIG", "/etc/x.toml"),
            ("REVGATE_ADMIN_URL", "http://h:1"),
            ("REVGATE_ADMIN_TOKEN", "t"),
            ("REVGATE_STORE_CACHE_BYTES", "1048576"),
            ("REVGATE_SERVER_LISTN", "x"),
            ("REVGATE_NOTHING_LIKE_IT_AT_ALL", "x"),
        ]));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("REVGATE_SERVER_LISTN")
                && w[0].contains("did you mean REVGATE_SERVER_LISTEN?"),
            "{w:?}"
        );
        assert!(
            w[1].contains("REVGATE_NOTHING_LIKE_IT_AT_ALL") && !w[1].contains("did you mean"),
            "{w:?}"
        );
    }

    #[test]
    fn every_override_and_cli_variable_is_known() {
        let all: Vec<(OsString, OsString)> = known_variables()
            .into_iter()
            .map(|k| (OsString::from(k), OsString::from("v")))
            .collect();
        assert!(all.len() > 10);
        assert_eq!(environment_warnings(all), Vec::<String>::new());
    }

    #[test]
    fn differing_admin_tokens_are_reported() {
        let w = environment_warnings(vars(&[
            ("REVGATE_ADMIN_TOKEN", "a"),
            ("REVGATE_SERVER_ADMIN_TOKEN", "b"),
        ]));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("differ"), "{w:?}");
        let same = environment_warnings(vars(&[
            ("REVGATE_ADMIN_TOKEN", "a"),
            ("REVGATE_SERVER_ADMIN_TOKEN", "a"),
        ]));
        assert!(same.is_empty(), "{same:?}");
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "abd"), 1);
        assert_eq!(edit_distance("abc", "ab"), 1);
        assert_eq!(edit_distance("ab", "ba"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
