//! Durable acknowledgement (SPEC §6), checked at the system-call level: the real
//! `revgate serve` runs under `strace -f`, every kind of write that records something is
//! sent on its own connection, and in the trace each `2xx` answer written on that socket
//! must come after an `fsync`/`fdatasync` of the store's `db` file that returned after
//! the request was read. sled's own flush issues only `sync_file_range`, which does not
//! count. Also: `revgate_store_flushes_total` equals the number of those syncs.
//!
//! Needs `strace` and permission to trace (no root needed). Without them the test says
//! so and passes without running, unless `REVGATE_REQUIRE_STRACE=1` (CI) makes that a
//! failure. `REVGATE_DURABILITY_BIN=PATH` runs the check against another build (e.g. the
//! previous release, to see it fail).

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// System calls traced: the syncs, sled's `sync_file_range`, and socket reads and writes.
const TRACED: &str =
    "trace=fsync,fdatasync,sync_file_range,read,recvfrom,recvmsg,write,writev,sendto,sendmsg";

/// Concurrent writers in the group-commit part.
const CONCURRENT: usize = 8;

/// Whether `strace` exists and may trace a child here.
fn strace_usable() -> bool {
    std::process::Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One request sent on a fresh connection, kept open until the end so that its client
/// port (which names the socket in the trace) is never reused.
struct Sent {
    what: String,
    port: u16,
    status: u16,
    body: String,
    _stream: tokio::net::TcpStream,
}

/// Sends `method path` with `content_type` and `body` to `addr` on a new connection and
/// reads the answer until the server closes it.
async fn send(
    addr: SocketAddr,
    what: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Sent {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let port = s.local_addr().expect("local address").port();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(ct) = content_type {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes()).await.expect("send request");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        (s, port, buf)
    };
    let (stream, port, buf) = tokio::time::timeout(WAIT, fut)
        .await
        .expect("answer within the bound");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no status line in {text:?}"));
    Sent {
        what: what.to_string(),
        port,
        status,
        body: text,
        _stream: stream,
    }
}

/// One system call from the trace, completed (an `<unfinished ...>` call joined with its
/// `resumed` line, at the position of the latter).
#[derive(Debug)]
struct Call {
    name: String,
    /// The first argument as strace shows it with `-yy` (`12</path>`, `7<TCP:[a->b]>`).
    fd: String,
    /// Everything after the name (arguments, result).
    text: String,
    ret: i64,
}

/// Parses `strace -f -o` output (`PID name(args) = ret`, split calls joined per PID).
fn parse_trace(text: &str) -> Vec<Call> {
    let mut pending: HashMap<&str, (String, String)> = HashMap::new();
    let mut calls = Vec::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let (name, text) = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((name, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            let Some((pname, head)) = pending.remove(pid) else {
                continue;
            };
            if pname != name {
                continue;
            }
            (pname, format!("{head}{tail}"))
        } else {
            let Some(open) = rest.find('(') else { continue };
            let name = rest[..open].to_string();
            let args = rest[open + 1..].to_string();
            if let Some(head) = args.strip_suffix(" <unfinished ...>") {
                pending.insert(pid, (name, head.to_string()));
                continue;
            }
            (name, args)
        };
        // `N<description>`; a socket's description holds `->`, so the end is a `>` that
        // closes the argument.
        let bytes = text.as_bytes();
        let fd = (0..bytes.len())
            .find(|&i| {
                bytes[i] == b'>' && matches!(bytes.get(i + 1), None | Some(b',' | b')' | b' '))
            })
            .map(|end| text[..=end].to_string())
            .unwrap_or_default();
        let ret = text
            .rsplit_once("= ")
            .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(-1);
        calls.push(Call {
            name,
            fd,
            text,
            ret,
        });
    }
    calls
}

/// The revgate process strace started (the only child of the strace process).
fn traced_pid(strace_pid: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children"))
            .expect("children of strace");
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("strace has started revgate")
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recording_2xx_follows_an_fdatasync_of_the_db_file() {
    if !strace_usable() {
        assert!(
            std::env::var_os("REVGATE_REQUIRE_STRACE").is_none(),
            "strace is missing or may not trace here, and REVGATE_REQUIRE_STRACE is set"
        );
        eprintln!("SKIPPED every_recording_2xx_follows_an_fdatasync_of_the_db_file: strace is missing or may not trace here");
        return;
    }
    let bin = std::env::var_os("REVGATE_DURABILITY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(revgate_bin()));
    let dir = tempfile::tempdir().unwrap();
    let echo = start_echo().await;
    let store = dir.path().join("store.db");
    let config = write_config_file(dir.path(), &config_text(echo, &store, ""));
    let trace_file = dir.path().join("trace.txt");
    let wrapper: Vec<&OsStr> = vec![
        OsStr::new("strace"),
        OsStr::new("-f"),
        OsStr::new("-qq"),
        OsStr::new("-yy"),
        OsStr::new("-s"),
        OsStr::new("48"),
        OsStr::new("-e"),
        OsStr::new(TRACED),
        OsStr::new("-o"),
        trace_file.as_os_str(),
    ];
    let mut child = ServeChild::start_under(&wrapper, &bin, &config).await;
    let (admin, proxy) = (child.admin, child.proxy);
    let json_ct = Some("application/json");
    let form_ct = Some("application/x-www-form-urlencoded");
    let n = now();

    let mut sent = Vec::new();
    for kind in ["jti", "sid", "sub"] {
        let body = json!({"kind": kind, "value": format!("d-{kind}"), "ttl": "1h"}).to_string();
        sent.push(
            send(
                admin,
                &format!("admin revoke {kind}"),
                "POST",
                "/v1/revocations",
                json_ct,
                &body,
            )
            .await,
        );
    }
    let body = json!({"token": token("u-tok", "s-tok", "d-by-token")}).to_string();
    sent.push(
        send(
            admin,
            "admin revoke by token",
            "POST",
            "/v1/revocations/token",
            json_ct,
            &body,
        )
        .await,
    );
    sent.push(
        send(
            admin,
            "admin unrevoke",
            "DELETE",
            "/v1/revocations/jti/d-jti",
            None,
            "",
        )
        .await,
    );
    let line = json!({
        "kind": "jti", "issuer": ISS, "value": "d-imported", "revoked_at": rfc3339(n),
        "issued_before": null, "expires_at": rfc3339(n + 3600), "reason": null, "source": "admin",
    });
    sent.push(
        send(
            admin,
            "admin import",
            "POST",
            "/v1/import",
            Some("application/x-ndjson"),
            &format!("{line}\n"),
        )
        .await,
    );
    sent.push(send(admin, "admin sweep", "POST", "/v1/sweep", None, "").await);
    let app_token = token("u-rev", "s-rev", "d-revoke-endpoint");
    sent.push(
        send(
            proxy,
            "revoke endpoint",
            "POST",
            "/revoke",
            form_ct,
            &form(&[("token", &app_token)]),
        )
        .await,
    );
    let logout = sign_logout(&logout_claims(Some("d-logout-sid"), None, n));
    sent.push(
        send(
            proxy,
            "back-channel logout",
            "POST",
            "/backchannel-logout",
            form_ct,
            &form(&[("logout_token", &logout)]),
        )
        .await,
    );
    // Group commit: concurrent writers, each still behind a sync.
    let concurrent = futures_util::future::join_all((0..CONCURRENT).map(|i| {
        let body =
            json!({"kind": "jti", "value": format!("d-concurrent-{i}"), "ttl": "1h"}).to_string();
        async move {
            send(
                admin,
                &format!("concurrent revoke {i}"),
                "POST",
                "/v1/revocations",
                json_ct,
                &body,
            )
            .await
        }
    }))
    .await;
    sent.extend(concurrent);
    for s in &sent {
        assert!((200..300).contains(&s.status), "{}: {}", s.what, s.body);
    }
    let metrics = send(admin, "metrics", "GET", "/metrics", None, "").await;
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    let flushes: u64 = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("revgate_store_flushes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no revgate_store_flushes_total in {}", metrics.body));

    let gateway = traced_pid(child.pid());
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(gateway.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {gateway}");
    let exit = child
        .wait_exit(WAIT)
        .await
        .expect("strace ends with the gateway");
    assert!(
        exit.success(),
        "gateway under strace: {exit:?}\n{}",
        child.log_text()
    );

    let trace = std::fs::read_to_string(&trace_file).expect("trace file");
    let calls = parse_trace(&trace);
    let db = format!(
        "<{}>",
        std::fs::canonicalize(store.join("db")).unwrap().display()
    );
    let is_db_sync = |c: &Call| {
        (c.name == "fdatasync" || c.name == "fsync") && c.fd.ends_with(&db) && c.ret == 0
    };
    let on_socket = |c: &Call, port: u16| c.fd.contains(&format!("->127.0.0.1:{port}]"));
    let mut unsynced = Vec::new();
    for s in &sent {
        let read = calls.iter().position(|c| {
            matches!(c.name.as_str(), "read" | "recvfrom" | "recvmsg")
                && on_socket(c, s.port)
                && c.ret > 0
        });
        let answer = calls.iter().position(|c| {
            matches!(c.name.as_str(), "write" | "writev" | "sendto" | "sendmsg")
                && on_socket(c, s.port)
                && c.text.contains("HTTP/1.1 2")
        });
        let (Some(read), Some(answer)) = (read, answer) else {
            panic!(
                "{}: request read or answer not in the trace (port {})",
                s.what, s.port
            );
        };
        assert!(
            read < answer,
            "{}: answer before the request was read",
            s.what
        );
        let synced = calls[read..answer].iter().any(is_db_sync);
        let ranges = calls[read..answer]
            .iter()
            .filter(|c| c.name == "sync_file_range" && c.fd.ends_with(&db))
            .count();
        println!("{}: fdatasync/fsync of db before the answer: {synced}; sync_file_range calls: {ranges}", s.what);
        if !synced {
            unsynced.push(s.what.clone());
        }
    }
    assert!(
        unsynced.is_empty(),
        "2xx answers written before any fsync/fdatasync of {db}: {unsynced:?}"
    );
    let metrics_answer = calls
        .iter()
        .position(|c| {
            matches!(c.name.as_str(), "write" | "writev" | "sendto" | "sendmsg")
                && on_socket(c, metrics.port)
                && c.text.contains("HTTP/1.1 200")
        })
        .expect("metrics answer in the trace");
    let syncs = calls[..metrics_answer]
        .iter()
        .filter(|c| c.name == "fdatasync" && c.fd.ends_with(&db) && c.ret == 0)
        .count() as u64;
    println!("revgate_store_flushes_total={flushes}, fdatasync(db) calls before it was read={syncs}, writes={}", sent.len());
    assert_eq!(
        flushes, syncs,
        "revgate_store_flushes_total counts the db syncs"
    );
}
