//! Faults the tests provoke for real: a small tmpfs to fill up (a disk-full store).

use std::path::PathBuf;

/// A tmpfs of a few MiB mounted on a fresh directory; unmounted when dropped. Needs root
/// (CAP_SYS_ADMIN): [`TmpfsMount::try_new`] answers `None` where mounting is not allowed.
pub struct TmpfsMount {
    /// Keeps the mount point alive.
    dir: Option<tempfile::TempDir>,
    /// The mount point.
    pub path: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size_mib` MiB, or `None` when `mount` is refused here.
    pub fn try_new(size_mib: u32) -> Option<TmpfsMount> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().to_path_buf();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mib}m,mode=0700"))
            .arg("tmpfs")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(TmpfsMount {
            dir: Some(dir),
            path,
        })
    }

    /// Fills the file system with `path/filler` until it is full; returns the filler path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).expect("create filler");
        for chunk in [1 << 16, 4096, 512, 1] {
            let buf = vec![0u8; chunk];
            while f.write_all(&buf).is_ok() {}
        }
        let _ = f.sync_all();
        filler
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let done = std::process::Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            // Still busy (a test failed with the store open): detach it anyway.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
        drop(self.dir.take());
    }
}
