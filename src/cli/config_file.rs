//! Which config file a command reads (SPEC §2): `--config FILE`, else `$REVGATE_CONFIG`,
//! else `./revgate.toml` when it exists, else `/etc/revgate/revgate.toml`. `serve`,
//! `check-config`, `check-store` and the `--offline` transfers need one; the admin
//! commands read one only when it exists and something (admin URL or token) is still
//! unresolved.

use std::path::{Path, PathBuf};

use super::output::CliError;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "REVGATE_CONFIG";
/// The config file looked for in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "revgate.toml";
/// The system-wide config file, looked for after [`DEFAULT_CONFIG_FILE`].
pub const SYSTEM_CONFIG_FILE: &str = "/etc/revgate/revgate.toml";
/// Where a config file is looked for, in order, when none is named.
pub const SEARCH_PATH: [&str; 2] = [DEFAULT_CONFIG_FILE, SYSTEM_CONFIG_FILE];

/// The outcome of the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ConfigFile {
    /// Named by `--config` or `$REVGATE_CONFIG` (the `&str` says which): it must load.
    Named(PathBuf, &'static str),
    /// The first file of the search path that exists.
    Found(PathBuf),
    /// None named, none found.
    Missing,
}

/// Looks for the config file: `flag`, else `$REVGATE_CONFIG` (through `env`; empty counts
/// as unset), else the first of `search` that is a file.
pub(super) fn locate(
    flag: Option<&Path>,
    search: &[&Path],
    env: &impl Fn(&str) -> Option<String>,
) -> ConfigFile {
    if let Some(path) = flag {
        return ConfigFile::Named(path.to_path_buf(), "--config");
    }
    if let Some(path) = env(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return ConfigFile::Named(PathBuf::from(path), CONFIG_ENV);
    }
    match search.iter().find(|p| p.is_file()) {
        Some(path) => ConfigFile::Found(path.to_path_buf()),
        None => ConfigFile::Missing,
    }
}

/// The config file of a command that cannot run without one; none is a usage error
/// naming every place looked at.
pub(super) fn required(
    flag: Option<&Path>,
    search: &[&Path],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<PathBuf, CliError> {
    match locate(flag, search, env) {
        ConfigFile::Named(path, _) | ConfigFile::Found(path) => Ok(path),
        ConfigFile::Missing => {
            let looked: Vec<String> = search.iter().map(|p| p.display().to_string()).collect();
            Err(CliError::Usage(format!(
                "no config file: pass --config FILE or set {CONFIG_ENV} (none of {} exists)",
                looked.join(", ")
            )))
        }
    }
}

/// The default search path as paths.
pub(super) fn search_path() -> [&'static Path; 2] {
    SEARCH_PATH.map(Path::new)
}

/// [`required`] with the process environment and the default search path.
pub(super) fn required_from_env(flag: Option<&Path>) -> Result<PathBuf, CliError> {
    required(flag, &search_path(), &|name: &str| std::env::var(name).ok())
}
