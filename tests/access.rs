//! Who may do what: access and admin passwords, read-only shares,
//! max-clients, and server identity pinning.

mod common;
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn access_password_required_wrong_and_right() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = secret_file(tmp.path(), "pw", "s3cret pass");
    let s = Setup::new(&["--password-file", pw.to_str().unwrap()]);
    std::fs::write(s.root().join("f"), b"data").unwrap();

    // Missing: no prompt without a terminal, exit 4 naming the variable.
    let out = s.run(&["ls", &s.url("")]);
    out.code(4);
    assert!(out.stderr.contains("FTS_PASSWORD"), "{}", out.stderr);

    // Wrong, as JSON error.
    let out = s
        .client
        .run_env(&["--json", "ls", &s.url("")], &[("FTS_PASSWORD", "nope")]);
    out.code(4);
    let e = out.err_json();
    assert_eq!(e["error"]["kind"], "auth");
    assert_eq!(e["error"]["exit_code"], 4);
    s.server
        .wait_event("failed auth", |v| v["event"] == "auth" && v["ok"] == false);
    // Failed logins are slowed down per address.
    let t = Instant::now();
    s.client
        .run_env(&["ls", &s.url("")], &[("FTS_PASSWORD", "nope2")])
        .code(4);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "no backoff after a failed login"
    );

    // Right, from the environment and from a file.
    let out = s.client.run_env(
        &["--json", "ls", &s.url("")],
        &[("FTS_PASSWORD", "s3cret pass")],
    );
    out.ok();
    assert_eq!(out.json()[0]["path"], "f");
    let cpw = secret_file(tmp.path(), "cpw", "s3cret pass");
    let dl = s.local("f");
    s.run(&[
        "--password-file",
        cpw.to_str().unwrap(),
        "get",
        &s.url("f"),
        dl.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(std::fs::read(&dl).unwrap(), b"data");
    // Nothing in the log carries the password.
    let log = s.server.lines.lock().unwrap().join("\n");
    assert!(!log.contains("s3cret") && !log.contains("nope"), "{log}");
}

#[test]
fn rm_needs_the_admin_password() {
    let tmp = tempfile::tempdir().unwrap();
    let adm = secret_file(tmp.path(), "adm", "adm1n");
    let s = Setup::new(&["--admin-password-file", adm.to_str().unwrap()]);
    std::fs::write(s.root().join("victim"), b"v").unwrap();
    random_file(&s.root().join("dir/a/b"), 10, 1);
    random_file(&s.root().join("dir/c"), 10, 2);

    let out = s.run(&["rm", &s.url("victim")]);
    out.code(4);
    assert!(out.stderr.contains("FTS_ADMIN_PASSWORD"), "{}", out.stderr);
    s.client
        .run_env(
            &["rm", &s.url("victim")],
            &[("FTS_ADMIN_PASSWORD", "wrong")],
        )
        .code(4);
    assert!(s.root().join("victim").exists());
    s.server.wait_event("failed admin auth", |v| {
        v["event"] == "auth" && v["admin"] == true && v["ok"] == false
    });

    let ok = [("FTS_ADMIN_PASSWORD", "adm1n")];
    let out = s.client.run_env(&["--json", "rm", &s.url("victim")], &ok);
    out.ok();
    assert_eq!(out.json()["files_deleted"], 1);
    assert!(!s.root().join("victim").exists());

    // Directories need -r.
    s.client.run_env(&["rm", &s.url("dir")], &ok).code(2);
    assert!(s.root().join("dir/c").exists());
    let out = s
        .client
        .run_env(&["--json", "rm", "-r", &s.url("dir")], &ok);
    out.ok();
    assert_eq!(out.json()["files_deleted"], 2);
    assert_eq!(out.json()["dirs_deleted"], 2);
    assert!(!s.root().join("dir").exists());

    // Missing target, and the root itself.
    s.client.run_env(&["rm", &s.url("ghost")], &ok).code(3);
    s.client.run_env(&["rm", "-r", &s.url("")], &ok).code(5);
    assert!(s.root().exists());
    s.server.wait_event("delete", |v| v["event"] == "delete");
}

#[test]
fn rm_refused_when_admin_is_disabled() {
    let s = Setup::new(&[]);
    std::fs::write(s.root().join("keep"), b"k").unwrap();
    let out = s
        .client
        .run_env(&["rm", &s.url("keep")], &[("FTS_ADMIN_PASSWORD", "x")]);
    out.code(5);
    assert!(out.stderr.contains("admin-password-file"), "{}", out.stderr);
    assert!(s.root().join("keep").exists());
}

#[test]
fn read_only_share_refuses_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let adm = secret_file(tmp.path(), "adm", "adm1n");
    let s = Setup::new(&[
        "--read-only",
        "--admin-password-file",
        adm.to_str().unwrap(),
    ]);
    std::fs::write(s.root().join("existing"), b"old").unwrap();
    let src = s.local("new");
    std::fs::write(&src, b"new").unwrap();
    let out = s.run(&["--json", "put", src.to_str().unwrap(), &s.url("")]);
    out.code(5);
    assert_eq!(out.err_json()["error"]["kind"], "permission");
    std::fs::write(&src, b"overwrite").unwrap();
    s.run(&["put", src.to_str().unwrap(), &s.url("existing")])
        .code(5);
    assert_eq!(std::fs::read(s.root().join("existing")).unwrap(), b"old");
    assert!(!s.root().join("new").exists());
    s.client
        .run_env(
            &["rm", &s.url("existing")],
            &[("FTS_ADMIN_PASSWORD", "adm1n")],
        )
        .code(5);
    assert!(s.root().join("existing").exists());
    // Reading still works.
    s.run(&["get", &s.url("existing"), s.local("copy").to_str().unwrap()])
        .ok();
}

struct NoCreds;
impl fts::client::Credentials for NoCreds {
    fn password(&self, _: fts::client::PasswordKind, _: &str) -> fts::Result<String> {
        Err(fts::Error::auth("none"))
    }
}

#[test]
fn max_clients_turns_extra_connections_away() {
    let s = Setup::new(&["--max-clients", "1"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kh = s.tmp.path().join("kh");
    let opts = fts::client::ConnectOptions {
        fingerprint: Some(s.server.fingerprint.clone()),
        known_hosts: Some(kh),
        ..Default::default()
    };
    let remote = fts::remote::parse_remote(&s.url("")).unwrap();
    // Hold the only slot with a library client.
    let held = rt
        .block_on(fts::client::Client::connect(
            &remote,
            &opts,
            Arc::new(NoCreds),
            &fts::client::Quiet,
        ))
        .unwrap();
    let out = s.run(&["--json", "ls", &s.url("")]);
    out.code(6);
    assert!(
        out.err_json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server full"),
        "{}",
        out.stderr
    );
    s.server.wait_event("rejected", |v| {
        v["event"] == "rejected" && v["reason"] == "server full"
    });
    // Once the slot frees up, clients are served again.
    rt.block_on(held.close()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = s.run(&["ls", &s.url("")]);
        if out.code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot was not released: {}",
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fingerprint_mismatch_fails_hard() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let c = Client::new();
    let src = tmp.path().join("file");
    std::fs::write(&src, b"payload").unwrap();

    let mut first = Server::start(&root, &tmp.path().join("home-a"), &[]);
    let out = c.run(&["put", src.to_str().unwrap(), &first.url("one")]);
    out.ok();
    assert!(
        out.stderr.contains("recorded") && out.stderr.contains(&first.fingerprint),
        "{}",
        out.stderr
    );
    // Same server again: silent, pinned.
    let out = c.run(&["ls", &first.url("")]);
    out.ok();
    assert!(!out.stderr.contains("recorded"));
    let port = first.port;
    let old_fp = first.fingerprint.clone();
    first.terminate();

    // Same address, new certificate (a different state directory).
    let second = Server::start_on(
        &root,
        &tmp.path().join("home-b"),
        &format!("127.0.0.1:{port}"),
        &[],
    );
    assert_ne!(second.fingerprint, old_fp);
    let out = c.run(&["put", src.to_str().unwrap(), &second.url("two")]);
    out.code(7);
    assert!(
        out.stderr.contains(&old_fp) && out.stderr.contains(&second.fingerprint),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("known_hosts"), "{}", out.stderr);
    assert!(
        !root.join("two").exists(),
        "something was transferred despite the mismatch"
    );
    let out = c.run(&["--json", "ls", &second.url("")]);
    out.code(7);
    assert_eq!(out.err_json()["error"]["kind"], "tls");

    // An explicit pin overrides known_hosts, and a wrong explicit pin fails.
    c.run(&[
        "--fingerprint",
        &second.fingerprint,
        "put",
        src.to_str().unwrap(),
        &second.url("two"),
    ])
    .ok();
    assert_eq!(std::fs::read(root.join("two")).unwrap(), b"payload");
    c.run(&["--fingerprint", &old_fp, "ls", &second.url("")])
        .code(7);
    c.run(&["--fingerprint", "SHA256:bogus", "ls", &second.url("")])
        .code(2);
}

#[test]
fn server_certificate_is_reused_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut a = Server::start(tmp.path(), &home, &[]);
    let fp = a.fingerprint.clone();
    a.terminate();
    let b = Server::start(tmp.path(), &home, &[]);
    assert_eq!(b.fingerprint, fp);
}
