//! Build script: records the git commit the binary is built from as `REVGATE_BUILD_COMMIT`
//! (the `commit` label of the `revgate_build_info` metric), `unknown` when the source is
//! not a git checkout or git is missing. Re-runs only when HEAD (or the branch it names)
//! moves, so ordinary builds do not rebuild the crate.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .filter(|c| c.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=REVGATE_BUILD_COMMIT={commit}");
    // The files that change when HEAD moves (worktrees included: --git-path resolves
    // them); only existing ones, since a missing one would re-run this script every time.
    let mut watched = vec!["HEAD".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    watched.push("packed-refs".to_string());
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
