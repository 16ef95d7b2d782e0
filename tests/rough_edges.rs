//! What a new user trips on, client side: remote specs that look like a
//! port, percent-encoded URLs, Ctrl-C, a closed stdout, messages that say
//! a path twice or give the wrong advice, grammar, `ls -l` and symlinks.

mod common;
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn a_port_after_the_host_is_a_usage_error_pointing_to_a_url() {
    let s = Setup::new(&[]);
    let f = s.local("f");
    std::fs::write(&f, b"x").unwrap();
    for spec in ["localhost:7390:", "localhost:7399", "127.0.0.1:7390:dir/"] {
        let out = s.run(&["--json", "put", f.to_str().unwrap(), spec]);
        out.code(2);
        let msg = out.err_message();
        assert!(msg.contains("fts://"), "{spec}: {msg}");
        assert!(msg.contains(":./"), "{spec}: {msg}");
    }
    // Nothing was uploaded anywhere.
    assert_eq!(std::fs::read_dir(s.root()).unwrap().count(), 0);
}

#[test]
fn url_paths_are_percent_decoded() {
    let s = Setup::new(&[]);
    let f = s.local("f");
    std::fs::write(&f, b"spaced").unwrap();
    s.run(&["put", f.to_str().unwrap(), &s.url("new%20name.txt")])
        .ok();
    assert_eq!(
        std::fs::read(s.root().join("new name.txt")).unwrap(),
        b"spaced"
    );
    let back = s.local("back");
    s.run(&["get", &s.url("new%20name.txt"), back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(back).unwrap(), b"spaced");
}

#[test]
fn ctrl_c_is_exit_130_with_an_error_and_the_rerun_resumes() {
    let s = Setup::new(&[]);
    let src = s.local("big.bin");
    random_file(&src, 6 << 20, 11);
    let url = s.url("");
    let args = [
        "--json",
        "put",
        "--bwlimit",
        "1M",
        src.to_str().unwrap(),
        &url,
    ];
    let mut bg = Bg::start(&s, &args, &[], false);
    // Wait until part of it has arrived.
    let part = s.root().join(".big.bin.fts-part");
    let t = Instant::now();
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 1 << 20 {
        assert!(t.elapsed() < WAIT, "the upload did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe_kill(bg.child.id(), "INT");
    let code = bg.wait(WAIT);
    assert_eq!(code, 130, "stderr: {}", bg.stderr());
    let last = bg.stderr().lines().last().unwrap_or_default().to_string();
    let v: serde_json::Value = serde_json::from_str(&last).expect(&last);
    assert_eq!(v["error"]["kind"], "interrupted");
    assert_eq!(v["error"]["exit_code"], 130);
    assert!(bg.stdout().is_empty(), "{}", bg.stdout());
    assert!(!s.root().join("big.bin").exists());

    let out = s.run(&["put", src.to_str().unwrap(), &url]);
    out.ok();
    assert_eq!(hash(&s.root().join("big.bin")), hash(&src));
    assert!(out.stdout.contains("resumed after"), "{}", out.stdout);
}

#[test]
fn a_closed_stdout_is_a_quiet_success() {
    let tmp = tempfile::tempdir().unwrap();
    let adm = secret_file(tmp.path(), "adm", "adm1n pw");
    let s = Setup::new(&["--admin-password-file", adm.to_str().unwrap()]);
    for _ in 0..5 {
        s.run(&["ls", &s.url("")]).ok();
    }
    let mut c = s.client.cmd();
    c.args(["--admin-password-file", adm.to_str().unwrap()])
        .args(["admin", "log", &s.url("")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // The reader goes away before the first line (like `| head -0`).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn failures_name_the_path_once_and_local_errors_come_without_a_summary() {
    let s = Setup::new(&[]);
    let ok = s.local("ok.txt");
    std::fs::write(&ok, b"fine").unwrap();
    let missing = s.local("nonexist");
    let out = s.run(&[
        "put",
        missing.to_str().unwrap(),
        ok.to_str().unwrap(),
        &s.url(""),
    ]);
    out.code(9);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("nonexist"))
        .unwrap()
        .to_string();
    assert_eq!(line.matches("nonexist").count(), 1, "{line}");

    let photos = s.local("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let out = s.run(&["put", photos.to_str().unwrap(), &s.url("")]);
    out.code(2);
    assert!(
        out.stdout.is_empty(),
        "summary before the error: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("is a directory (use -r)"),
        "{}",
        out.stderr
    );
}

#[test]
fn counts_agree_with_their_number() {
    let tmp = tempfile::tempdir().unwrap();
    let adm = secret_file(tmp.path(), "adm", "adm1n pw");
    let s = Setup::new(&["--admin-password-file", adm.to_str().unwrap()]);
    std::fs::create_dir_all(s.root().join("d")).unwrap();
    std::fs::write(s.root().join("d/one"), b"1").unwrap();
    std::fs::write(s.root().join("single"), b"1").unwrap();
    let out = s.run(&[
        "--admin-password-file",
        adm.to_str().unwrap(),
        "rm",
        "-r",
        &s.url("d"),
    ]);
    out.ok();
    assert_eq!(out.stdout.trim(), "removed 1 file, 1 directory");
    let back = s.local("single");
    let out = s.run(&["get", &s.url("single"), back.to_str().unwrap()]);
    out.ok();
    assert!(
        out.stdout.starts_with("1 of 1 file transferred"),
        "{}",
        out.stdout
    );
}

#[test]
fn advice_fits_the_situation() {
    let tmp = tempfile::tempdir().unwrap();
    let adm = secret_file(tmp.path(), "adm", "adm1n pw");
    let s = Setup::new(&["--admin-password-file", adm.to_str().unwrap()]);
    // No terminal: the admin password is asked for by name, with a way to
    // give it, never by suggesting the very command that was run.
    let out = s.run(&["chat", "--admin", &s.url("")]);
    out.code(4);
    assert!(out.stderr.contains("FTS_ADMIN_PASSWORD"), "{}", out.stderr);
    assert!(out.stderr.contains("fts login --admin"), "{}", out.stderr);
    assert!(!out.stderr.contains("run `fts chat"), "{}", out.stderr);
    // A wrong --fingerprint: check the flag, not known_hosts.
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = s.run(&["--fingerprint", wrong, "ls", &s.url("")]);
    out.code(7);
    assert!(
        out.stderr
            .contains("the fingerprint you passed with --fingerprint"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("remove the line"), "{}", out.stderr);
}

#[test]
fn ls_long_shows_where_a_symlink_points() {
    let s = Setup::new(&[]);
    std::fs::write(s.root().join("target.txt"), b"t").unwrap();
    std::os::unix::fs::symlink("target.txt", s.root().join("link")).unwrap();
    let out = s.run(&["ls", "-l", &s.url("")]);
    out.ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.ends_with(" link -> target.txt")),
        "{}",
        out.stdout
    );
    let v = s.run(&["--json", "ls", &s.url("")]).json();
    let link = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "link")
        .unwrap();
    assert_eq!(link["target"], "target.txt");
}
