//! Commands on the store of a stopped gateway: `check-store`, and opening the store for
//! `export --offline` / `import --offline` (refused while a gateway holds it; a damaged
//! store is read as far as sled can, or, for an import, replaced — SPEC §6 recovery).

use std::path::Path;

use super::config_file::required_from_env;
use super::output::CliError;
use super::AdminConnection;
use crate::config::Config;
use crate::start::store_line;
use crate::store::{OpenMode, RevocationStore, StoreError};

/// `check-store`: verifies that every record has its expiry-index entry and vice versa and
/// prints the counts; with `repair`, removes the orphans. Fails (exit 1) when the store
/// stays inconsistent, 64 when the config is bad.
pub(super) fn check_store(path: Option<&Path>, repair: bool) -> Result<(), CliError> {
    let path = required_from_env(path)?;
    let config =
        Config::load(&path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    let store = RevocationStore::open_with(
        &config.store.path,
        config.store.cache_bytes,
        crate::clock::system(),
        OpenMode::Check,
    )
    .map_err(|e| CliError::Failed(store_line(&config.store.path.display().to_string(), &e)))?;
    let mark = store.mark_report();
    let r = store
        .check_consistency(repair)
        .map_err(|e| CliError::Failed(format!("check-store: {e}")))?;
    println!("store:                 {}", config.store.path.display());
    match mark.acknowledged {
        Some((commit, c)) => println!(
            "acknowledged:          commit {commit} (jti {}, sid {}, sub {}) per {}; the store holds commit {}",
            c.jti,
            c.sid,
            c.sub,
            mark.path.display(),
            mark.store_commit
        ),
        None => println!(
            "acknowledged:          no mark yet ({} is created when the gateway starts)",
            mark.path.display()
        ),
    }
    println!("records:               {}", r.records);
    println!("index entries:         {}", r.index_entries);
    println!("records without index: {}", r.records_without_index);
    println!("index without record:  {}", r.index_without_record);
    let orphans = r.records_without_index + r.index_without_record;
    if orphans == 0 {
        println!("consistent");
        Ok(())
    } else if repair && r.repaired {
        println!("repaired {orphans} orphan(s)");
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "store has {orphans} orphan(s); run check-store --repair"
        )))
    }
}

/// The config naming the store of `--offline`: `--config`, else the one found as for
/// every command (`$REVGATE_CONFIG`, `./revgate.toml`, `/etc/revgate/revgate.toml`).
fn offline_config(conn: &AdminConnection) -> Result<Config, CliError> {
    let path = required_from_env(conn.config.as_deref())?;
    Config::load(&path)
        .map_err(|e| CliError::Usage(format!("invalid config {}: {e}", path.display())))
}

/// The error of an offline open, on one line: a locked store says how to go on, any other
/// is the line start-up prints.
fn offline_open_error(config: &Config, e: StoreError) -> CliError {
    match e {
        StoreError::Locked(_) => CliError::Failed(format!(
            "{e}: stop the gateway, or run the command without --offline"
        )),
        other => CliError::Failed(store_line(&config.store.path.display().to_string(), &other)),
    }
}

/// Opens the store named by `--config` for an offline export or a dry-run import, in
/// `mode`; a damaged store that sled can still read is read as it is, saying so on stderr.
pub(super) fn open_offline_store(
    conn: &AdminConnection,
    mode: OpenMode,
) -> Result<(Config, RevocationStore), CliError> {
    let config = offline_config(conn)?;
    let store = RevocationStore::open_with(
        &config.store.path,
        config.store.cache_bytes,
        crate::clock::system(),
        mode,
    )
    .map_err(|e| offline_open_error(&config, e))?;
    if let Some(d) = store.damage() {
        eprintln!(
            "revgate: store {} is damaged: {}; reading what it still holds",
            d.store.display(),
            d.problem
        );
    }
    Ok((config, store))
}

/// Opens the store for an offline import: a damaged store is replaced by a new one
/// holding what could be read back from it (SPEC §6 recovery); says so on stderr.
pub(super) async fn open_restore_store(
    conn: &AdminConnection,
) -> Result<(Config, RevocationStore), CliError> {
    let config = offline_config(conn)?;
    let (store, restored) = RevocationStore::open_for_restore(
        &config.store.path,
        config.store.cache_bytes,
        crate::clock::system(),
    )
    .await
    .map_err(|e| offline_open_error(&config, e))?;
    if let Some(r) = restored {
        let moved = match &r.moved_to {
            Some(p) => format!("moved aside to {}", p.display()),
            None => "it was gone".to_string(),
        };
        let stopped = r
            .salvage_error
            .map(|e| format!(" (sled could read no further: {e})"))
            .unwrap_or_default();
        eprintln!(
            "revgate: store {} was damaged: {}; {moved}; a new store holds the {} unexpired \
             record(s) read back from it{stopped}, and the import follows",
            r.damage.store.display(),
            r.damage.problem,
            r.salvaged
        );
    }
    Ok((config, store))
}
