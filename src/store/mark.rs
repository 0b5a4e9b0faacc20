//! The acknowledgement mark: a small file beside the store directory
//! (`<store.path>.hwm`) that says how much the store had acknowledged, kept outside sled's
//! log so that sled's recovery cannot silently lose it together with the data.
//!
//! The file holds two fixed-size slots; a commit overwrites the slot of its sequence's
//! parity (`seq % 2`) in place and `fdatasync`s it. The file never changes size, so the
//! sync persists the slot alone. A write torn by a crash leaves the other slot, one commit
//! older — still a valid lower bound, because every commit's data is durable in sled
//! before its mark is written. A reader takes the valid slot with the highest sequence.
//!
//! Slot layout ([`SLOT_BYTES`] bytes, integers big-endian): magic ‖ seq ‖ store id ‖
//! jti count ‖ sid count ‖ sub count ‖ first 8 bytes of SHA-256 over all of the above ‖
//! zero padding.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Suffix appended to `store.path` to name the mark file.
pub const MARK_SUFFIX: &str = ".hwm";
/// Bytes per slot (two slots per file).
const SLOT_BYTES: usize = 64;
/// First bytes of a valid slot (format version 1).
const MAGIC: &[u8; 8] = b"RGHWM\x00\x00\x01";
/// Bytes of a slot covered by the checksum.
const BODY_BYTES: usize = 8 + 8 + 8 + 3 * 8;

/// What one commit acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MarkState {
    /// Commit sequence (also written into sled's `meta` tree by that commit).
    pub seq: u64,
    /// Identity of the store the mark belongs to (also in `meta`).
    pub store_id: u64,
    /// Revocation records per kind (jti, sid, sub) as of that commit.
    pub counts: [u64; 3],
}

/// The mark as found on disk.
#[derive(Debug)]
pub(crate) enum Found {
    /// No mark file: a new store, or one from a release without marks.
    Missing,
    /// The newest valid slot.
    Valid(MarkState),
    /// A file is there but no slot of it is valid (or it cannot be read).
    Unreadable(String),
}

/// The mark file of the store at `store`: `<store>.hwm`, beside the directory, so that it
/// survives the directory's removal. `None` when `store` has no final component to
/// name it after (e.g. `/`).
pub(crate) fn path_for(store: &Path) -> Option<PathBuf> {
    let named = match store.file_name() {
        Some(_) => store.to_path_buf(),
        // `.` or `dir/..`: name it after the directory it really is.
        None => std::fs::canonicalize(store).ok()?,
    };
    let mut name = named.file_name()?.to_os_string();
    name.push(MARK_SUFFIX);
    Some(named.with_file_name(name))
}

fn encode(state: &MarkState) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[..8].copy_from_slice(MAGIC);
    slot[8..16].copy_from_slice(&state.seq.to_be_bytes());
    slot[16..24].copy_from_slice(&state.store_id.to_be_bytes());
    for (i, c) in state.counts.iter().enumerate() {
        slot[24 + 8 * i..32 + 8 * i].copy_from_slice(&c.to_be_bytes());
    }
    let sum = Sha256::digest(&slot[..BODY_BYTES]);
    slot[BODY_BYTES..BODY_BYTES + 8].copy_from_slice(&sum[..8]);
    slot
}

fn decode(slot: &[u8]) -> Option<MarkState> {
    if slot.len() != SLOT_BYTES || &slot[..8] != MAGIC {
        return None;
    }
    let sum = Sha256::digest(&slot[..BODY_BYTES]);
    if slot[BODY_BYTES..BODY_BYTES + 8] != sum[..8] {
        return None;
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&slot[at..at + 8]);
        u64::from_be_bytes(b)
    };
    Some(MarkState {
        seq: word(8),
        store_id: word(16),
        counts: [word(24), word(32), word(40)],
    })
}

/// Reads the mark at `path`.
pub(crate) fn read(path: &Path) -> Found {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
        Err(e) => return Found::Unreadable(e.to_string()),
    };
    if bytes.len() != 2 * SLOT_BYTES {
        return Found::Unreadable(format!(
            "{} bytes instead of {}",
            bytes.len(),
            2 * SLOT_BYTES
        ));
    }
    match bytes
        .chunks(SLOT_BYTES)
        .filter_map(decode)
        .max_by_key(|s| s.seq)
    {
        Some(state) => Found::Valid(state),
        None => Found::Unreadable("no valid slot (checksum mismatch)".to_string()),
    }
}

/// `(device, inode)` of a file's metadata.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Syncs the directory holding `path` (so a created or renamed entry is durable).
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// The open mark file of a store; only commits write it (one at a time).
#[derive(Debug)]
pub(crate) struct Mark {
    path: PathBuf,
    file: File,
    identity: (u64, u64),
}

impl Mark {
    /// Creates the mark at `path` holding `state` (a new file written and synced under a
    /// temporary name, then renamed into place and the directory synced), replacing any
    /// mark there.
    pub(crate) fn create(path: &Path, state: &MarkState) -> std::io::Result<Mark> {
        let mut tmp_name = path.as_os_str().to_os_string();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let slot = encode(state);
            // Both slots hold the state: either one alone is a valid mark.
            f.write_all(&slot)?;
            f.write_all(&slot)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        sync_parent(path)?;
        Mark::open(path)
    }

    /// Opens an existing mark file for writing.
    pub(crate) fn open(path: &Path) -> std::io::Result<Mark> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let identity = identity(&file.metadata()?);
        Ok(Mark {
            path: path.to_path_buf(),
            file,
            identity,
        })
    }

    /// Writes `state` into the slot of its parity and syncs it.
    pub(crate) fn write(&self, state: &MarkState) -> std::io::Result<()> {
        let offset = (state.seq % 2) * SLOT_BYTES as u64;
        self.file.write_all_at(&encode(state), offset)?;
        self.file.sync_data()
    }

    /// `Err` naming the problem when the mark file was removed or replaced since it was
    /// opened, or can no longer be opened for writing (read-only file system...).
    pub(crate) fn check_in_place(&self) -> Result<(), String> {
        check_file_in_place(&self.path, self.identity, "acknowledgement mark")
    }
}

/// `Err` naming the problem when the file at `path` is no longer the file `identity`
/// names, or cannot be opened for writing.
pub(crate) fn check_file_in_place(
    path: &Path,
    identity: (u64, u64),
    what: &str,
) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{what} {} is gone: {e}", path.display()))?;
    if self::identity(&meta) != identity {
        return Err(format!(
            "{what} {} was replaced by another file",
            path.display()
        ));
    }
    OpenOptions::new()
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|e| format!("{what} {} is not writable: {e}", path.display()))
}

/// `(device, inode)` of an open file.
pub(crate) fn file_identity(file: &File) -> std::io::Result<(u64, u64)> {
    Ok(identity(&file.metadata()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(seq: u64) -> MarkState {
        MarkState {
            seq,
            store_id: 42,
            counts: [seq, 2, 3],
        }
    }

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.hwm");
        assert!(matches!(read(&path), Found::Missing));
        let mark = Mark::create(&path, &state(1)).unwrap();
        assert!(matches!(read(&path), Found::Valid(s) if s == state(1)));
        mark.write(&state(2)).unwrap();
        mark.write(&state(3)).unwrap();
        assert!(matches!(read(&path), Found::Valid(s) if s == state(3)));
        // Tear slot 1 (seq 3): slot 0 (seq 2) is the mark.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[SLOT_BYTES + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read(&path), Found::Valid(s) if s == state(2)));
        // Both torn: unreadable, never "missing".
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read(&path), Found::Unreadable(_)));
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(read(&path), Found::Unreadable(_)));
    }

    #[test]
    fn mark_is_named_after_the_store_directory() {
        assert_eq!(
            path_for(Path::new("data/revgate.db")).unwrap(),
            PathBuf::from("data/revgate.db.hwm")
        );
        assert_eq!(
            path_for(Path::new("/var/lib/revgate/db/")).unwrap(),
            PathBuf::from("/var/lib/revgate/db.hwm")
        );
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("store");
        std::fs::create_dir_all(inner.join("sub")).unwrap();
        assert_eq!(
            path_for(&inner.join("sub/..")).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap().join("store.hwm")
        );
        assert_eq!(path_for(Path::new("/")), None);
    }

    #[test]
    fn replaced_or_removed_mark_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.hwm");
        let mark = Mark::create(&path, &state(1)).unwrap();
        mark.check_in_place().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(mark.check_in_place().unwrap_err().contains("is gone"));
        std::fs::write(&path, [0u8; 2 * SLOT_BYTES]).unwrap();
        assert!(mark.check_in_place().unwrap_err().contains("replaced"));
    }
}
