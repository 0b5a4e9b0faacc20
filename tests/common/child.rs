//! The real `revgate` binary as a child process: a one-shot command ([`run_revgate`]) or a
//! running `revgate serve` ([`ServeChild`]), and the `/proc` figures of a child.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::WAIT;

/// Path of the `revgate` binary built for these tests.
pub fn revgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_revgate")
}

/// Removes from `cmd` every `REVGATE_*` variable of the test's own environment (the
/// suite's knobs such as `REVGATE_OP_PEER`, an operator's `REVGATE_ADMIN_TOKEN`): the child
/// sees only what the test sets, and warns about no variable it does not read.
pub fn without_revgate_env(cmd: &mut tokio::process::Command) -> &mut tokio::process::Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REVGATE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs the `revgate` binary to completion (bounded by [`WAIT`], killed if it overruns)
/// in `cwd`, with `envs` set and no other `REVGATE_*` variable ([`without_revgate_env`]).
pub async fn run_revgate(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(revgate_bin());
    without_revgate_env(&mut cmd);
    cmd.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn revgate");
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("revgate {args:?} did not finish within {WAIT:?}"))
        .expect("revgate output")
}

/// `revgate serve --config FILE` as a child process; killed when dropped.
///
/// [`ServeChild::start`] runs the usual command line ([`ServeChild::command`]); to run it
/// another way (another log filter, under a wrapper) build the command and hand it to
/// [`ServeChild::spawn`].
pub struct ServeChild {
    /// The child (kill_on_drop).
    pub child: tokio::process::Child,
    /// Proxy listener address (from the start-up log line).
    pub proxy: SocketAddr,
    /// Admin listener address (from the start-up log line).
    pub admin: SocketAddr,
    /// Every stderr line so far (ANSI stripped).
    pub log: Arc<Mutex<Vec<String>>>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl ServeChild {
    /// Starts `revgate serve --config config` and waits (bounded) for its listening line.
    pub async fn start(config: &Path) -> ServeChild {
        ServeChild::spawn(ServeChild::command(config)).await
    }

    /// Like [`ServeChild::start`] with the binary `bin`, run under `wrapper` (a command and
    /// its arguments, e.g. `strace -f -o FILE`; none when empty). The child is the wrapper.
    pub async fn start_under(
        wrapper: &[&std::ffi::OsStr],
        bin: &Path,
        config: &Path,
    ) -> ServeChild {
        ServeChild::spawn(ServeChild::command_for(wrapper, bin, config)).await
    }

    /// The command [`ServeChild::start`] runs: `revgate serve --config config`, log level
    /// `info`, no colours, no `REVGATE_*` variable of the test's environment.
    pub fn command(config: &Path) -> tokio::process::Command {
        ServeChild::command_for(&[], Path::new(revgate_bin()), config)
    }

    /// `bin serve --config config` under `wrapper` (see [`ServeChild::start_under`]).
    fn command_for(
        wrapper: &[&std::ffi::OsStr],
        bin: &Path,
        config: &Path,
    ) -> tokio::process::Command {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => tokio::process::Command::new(bin),
        };
        without_revgate_env(&mut cmd);
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG_STYLE", "never")
            .env("RUST_LOG", "info");
        cmd
    }

    /// Spawns `cmd` (a `revgate serve` command line) with stdin and stdout closed and
    /// stderr read for the child's whole life, and waits (bounded) for its listening line.
    pub async fn spawn(mut cmd: tokio::process::Command) -> ServeChild {
        use tokio::io::AsyncBufReadExt;
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn revgate serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let log2 = log.clone();
        // Drains stderr for the child's whole life, so it never blocks on a full pipe.
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let line = strip_ansi(&line);
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.recv().await {
                if let Some(addrs) = parse_listening_line(&line) {
                    return Some(addrs);
                }
            }
            None
        })
        .await;
        let (proxy, admin) = match found {
            Ok(Some(addrs)) => addrs,
            _ => {
                let _ = child.start_kill();
                panic!(
                    "revgate serve did not log its listening line within {WAIT:?}; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        ServeChild {
            child,
            proxy,
            admin,
            log,
            lines,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    /// Waits (bounded) for a stderr line containing `needle`; false if none came.
    pub async fn wait_for_log(&mut self, needle: &str) -> bool {
        tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }

    /// The log so far, for failure messages.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM with `kill -TERM <pid>`.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends signal `name` (`TERM`, `HUP`, …) with `kill -<name> <pid>`.
    pub fn signal(&self, name: &str) {
        let pid = self.pid();
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits up to `bound` for the exit; kills the child if it overruns.
    pub async fn wait_exit(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(status) => Some(status.expect("wait")),
            Err(_) => {
                let _ = self.child.start_kill();
                None
            }
        }
    }

    /// SIGKILL, then reap (bounded).
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("SIGKILL");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("killed child is reaped within the bound")
            .expect("wait");
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`) from a log line.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The proxy and admin addresses of a `revgate listening proxy=... admin=...` log line
/// (text or JSON log format, colours or not).
pub fn parse_listening_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = strip_ansi(line);
    if !line.contains("revgate listening") {
        return None;
    }
    let field = |name: &str| -> Option<SocketAddr> {
        for pat in [format!("{name}="), format!("\"{name}\":\"")] {
            if let Some(i) = line.find(&pat) {
                let rest = &line[i + pat.len()..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
                    .unwrap_or(rest.len());
                if let Ok(addr) = rest[..end].parse() {
                    return Some(addr);
                }
            }
        }
        None
    };
    Some((field("proxy")?, field("admin")?))
}

/// Resident set size of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// Open file descriptors of process `pid` (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd dir")
        .count()
}
