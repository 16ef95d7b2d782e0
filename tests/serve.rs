//! Starting `fts serve` and what a new user sees of it (issue 15): one
//! server per state directory, a busy port, the banner, plain `http://` on
//! the TLS port, and failed downloads in the event log.

mod common;

use common::*;
use fts::proto::{Msg, PROTOCOL_VERSION};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `fts serve ROOT --listen 127.0.0.1:0 EXTRA...` with server HOME `home`,
/// run to its end (it is expected to refuse to start).
fn serve_fails(root: &std::path::Path, home: &std::path::Path, extra: &[&str]) -> Out {
    let mut c = fts_cmd(home);
    c.arg("serve").arg(root).args(extra);
    if !extra.contains(&"--listen") {
        c.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It must give up by itself, at once.
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the second server kept running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn a_second_server_on_one_state_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let mut first = Server::start(&a, &home, &[]);
    let state = home.join(".local/state/fts");
    assert_eq!(
        std::fs::read_to_string(state.join("lock")).unwrap().trim(),
        first.pid().to_string()
    );

    // Another share, same state directory: refused before it listens,
    // naming the owner, exit 1; as JSON too.
    let out = serve_fails(&b, &home, &[]);
    out.code(1);
    let pid = format!("PID {}", first.pid());
    assert!(
        out.stderr.contains(&pid) && out.stderr.contains("state directory"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let out = serve_fails(&b, &home, &["--json"]);
    out.code(1);
    assert_eq!(out.err_json()["error"]["kind"], "other");
    assert!(out.err_message().contains(&pid), "{}", out.stderr);
    // The same directory named by --state-dir or FTS_STATE_DIR is the same
    // directory.
    let other_home = tmp.path().join("other-home");
    let out = serve_fails(&b, &other_home, &["--state-dir", state.to_str().unwrap()]);
    out.code(1);
    assert!(out.stderr.contains(&pid), "{}", out.stderr);
    // A state directory of its own is fine.
    let second = Server::start(&b, &other_home, &[]);
    drop(second);

    // The first server's totals are its own: an upload is counted once the
    // refused starts are gone.
    let c = Client::new();
    let f = tmp.path().join("f.bin");
    random_file(&f, 300_000, 1);
    c.run(&["put", f.to_str().unwrap(), &first.url("")]).ok();
    first.terminate();
    let totals: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("totals.json")).unwrap()).unwrap();
    assert_eq!(totals["bytes_received"], 300_000, "{totals}");

    // A server killed outright leaves a stale PID in the lock file but no
    // lock: the next start is not blocked.
    let killed = Server::start(&a, &home, &[]);
    let dead = killed.pid();
    unsafe_kill(dead, "KILL");
    drop(killed);
    assert_eq!(
        std::fs::read_to_string(state.join("lock")).unwrap().trim(),
        dead.to_string()
    );
    let again = Server::start(&a, &home, &[]);
    assert_eq!(
        std::fs::read_to_string(state.join("lock")).unwrap().trim(),
        again.pid().to_string()
    );
}

#[test]
fn a_port_in_use_is_not_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let first = Server::start(&root, &tmp.path().join("home-a"), &[]);
    let taken = format!("127.0.0.1:{}", first.port);
    let out = serve_fails(&root, &tmp.path().join("home-b"), &["--listen", &taken]);
    out.code(1);
    assert!(
        out.stderr.contains("already in use") && out.stderr.contains(&taken),
        "{}",
        out.stderr
    );
    let out = serve_fails(
        &root,
        &tmp.path().join("home-b"),
        &["--json", "--listen", &taken],
    );
    out.code(1);
    assert_eq!(out.err_json()["error"]["kind"], "other");
    // What is wrong with the command line still is a usage error.
    for bad in ["nonsense", "127.0.0.1:99999", "127.0.0.1"] {
        let out = serve_fails(&root, &tmp.path().join("home-b"), &["--listen", bad]);
        out.code(2);
        assert!(out.stderr.contains("--listen"), "{bad}: {}", out.stderr);
    }
}

/// The first two lines `fts serve` prints without --json.
fn banner(extra: &[&str]) -> (String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = fts_cmd(tmp.path());
    c.arg("serve")
        .arg(tmp.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut first, mut second) = (String::new(), String::new());
    out.read_line(&mut first).unwrap();
    out.read_line(&mut second).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    (first.trim().to_string(), second.trim().to_string())
}

#[test]
fn the_banner_says_whether_admin_is_enabled() {
    let tmp = tempfile::tempdir().unwrap();
    let admin = secret_file(tmp.path(), "admin", "admin pw");
    let access = secret_file(tmp.path(), "access", "access pw");

    let (first, second) = banner(&[]);
    assert!(
        first.contains("(read-write, no password: open to anyone who can connect, no admin password (rm and admin actions disabled))"),
        "{first}"
    );
    assert!(second.starts_with("fingerprint SHA256:"), "{second}");

    let (first, _) = banner(&[
        "--read-only",
        "--password-file",
        access.to_str().unwrap(),
        "--admin-password-file",
        admin.to_str().unwrap(),
    ]);
    assert!(
        first.contains("(read-only, password required, admin enabled)"),
        "{first}"
    );
    // The JSON line keeps saying it too.
    let s = Setup::new(&["--admin-password-file", admin.to_str().unwrap()]);
    assert_eq!(s.server.events()[0]["admin_enabled"], true);
}

/// Sends `request` over plain TCP to the TLS port; the whole answer.
fn plain(s: &Setup, request: &str) -> Resp {
    let mut sock = std::net::TcpStream::connect(&s.server.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).unwrap(); // the server closes after it
    parse_response(&raw)
}

#[test]
fn plain_http_on_the_tls_port_is_told_to_use_https() {
    let s = Setup::new(&[]);
    std::fs::write(s.root().join("f"), b"x").unwrap();
    let port = s.server.port;

    // A browser typing http://HOST:PORT/... is sent to https:// (same
    // host, this port, same path).
    let r = plain(
        &s,
        &format!(
            "GET /files/a%20b?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: t\r\n\r\n"
        ),
    );
    assert!(r.head.starts_with("HTTP/1.1 301 "), "{}", r.head);
    let to = format!("https://127.0.0.1:{port}/files/a%20b?x=1");
    assert_eq!(r.header("location").as_deref(), Some(to.as_str()));
    assert!(r.text().contains(&format!("use {to}")), "{}", r.text());
    assert_eq!(r.header("connection").as_deref(), Some("close"));

    // Anything else: 400, with the hint.
    let r = plain(
        &s,
        "POST /api/admin/login HTTP/1.1\r\nHost: example.org\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(r.head.starts_with("HTTP/1.1 400 "), "{}", r.head);
    assert!(
        r.text()
            .contains(&format!("HTTPS only: use https://example.org:{port}/")),
        "{}",
        r.text()
    );
    assert!(r.header("location").is_none());
    let r = plain(&s, "GET / HTTP/1.0\r\n\r\n");
    assert!(r.head.starts_with("HTTP/1.1 400 "), "{}", r.head);

    // curl says the same.
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok()
    {
        let o = std::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.starts_with("HTTP/1.1 301"), "{text}");
        assert!(!text.contains("HTTP/0.9"), "{text}");
    }

    s.server.wait_event("plain HTTP logged", |v| {
        v["event"] == "rejected"
            && v["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("plain HTTP on the TLS port")
    });
    // TLS on the same port is served as ever.
    s.run(&["ls", &s.url("")]).ok();
    let (code, _, body) = https_get(&s, "/files/f", None);
    assert_eq!((code, body.as_str()), (200, "x"));
}

#[test]
fn a_refused_download_logs_an_error_event() {
    let s = Setup::new(&[]);
    let outside = s.tmp.path().join("outside.txt");
    std::fs::write(&outside, b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, s.root().join("out")).unwrap();
    std::fs::create_dir(s.root().join("dir")).unwrap();
    let fifo = s.root().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::fs::write(s.root().join("ok"), b"fine").unwrap();

    // What the client asks for directly: each refusal reaches it as an
    // error, the session goes on, and each is an `error` event.
    let replies = block_on(async {
        let ((mut r, mut w), welcome) = raw_session(&s, PROTOCOL_VERSION).await;
        assert!(matches!(welcome, Msg::Welcome { .. }), "{welcome:?}");
        let mut replies = Vec::new();
        for (id, path) in [(1, "out"), (2, "nope"), (3, "dir"), (4, "fifo")] {
            w.msg(&Msg::Get {
                id,
                path: path.into(),
                resume: None,
                signature: None,
            })
            .await
            .unwrap();
            w.flush().await.unwrap();
            replies.push(r.read_msg().await.unwrap());
        }
        w.msg(&Msg::Get {
            id: 5,
            path: "ok".into(),
            resume: None,
            signature: None,
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        assert!(
            matches!(r.read_msg().await.unwrap(), Msg::FileHeader { id: 5, .. }),
            "the session did not go on"
        );
        replies
    });
    let kinds: Vec<_> = replies
        .iter()
        .map(|m| match m {
            Msg::Error { kind, .. } => kind.as_str(),
            m => panic!("not refused: {m:?}"),
        })
        .collect();
    assert_eq!(kinds, ["permission", "not_found", "other", "other"]);
    for m in &replies {
        let Msg::Error { message, .. } = m else {
            unreachable!()
        };
        s.server.wait_event(message, |v| {
            v["event"] == "error"
                && v["category"] == "error"
                && v["client"].as_u64().is_some_and(|c| c > 0)
                && v["message"] == message.as_str()
        });
    }

    // The same through the CLI.
    let dest = s.local("got");
    let out = s.run(&["get", &s.url("fifo"), dest.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    let errors = || {
        s.server
            .events()
            .into_iter()
            .filter(|v| v["event"] == "error")
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while errors() < 5 {
        assert!(
            Instant::now() < deadline,
            "no error event for the CLI's get: {:#?}",
            s.server.events()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
