//! Stored credentials: `fts login` / `fts logout` and where commands take
//! passwords from (flag or environment, then the store, then a prompt on a
//! terminal only). The file store is tested for real, the keyring through
//! its mock in `src/credstore/`, and here the Linux kernel keyring for
//! real inside a session keyring, and `auto` mode with whatever this
//! machine offers (the file, where a process has no session keyring).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PW: &str = "acc3ss pw";
const ADMIN: &str = "adm1n pw";

/// A server with an access password (and an admin password with `admin`).
fn protected(admin: bool) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let pw = secret_file(tmp.path(), "pw", PW);
    let adm = secret_file(tmp.path(), "adm", ADMIN);
    let mut extra = vec!["--password-file", pw.to_str().unwrap()];
    if admin {
        extra.extend(["--admin-password-file", adm.to_str().unwrap()]);
    }
    let s = Setup::new(&extra);
    // The server has read the files.
    drop(tmp);
    s
}

fn creds_file(s: &Setup) -> PathBuf {
    s.client.home.path().join(".config/fts/credentials")
}

/// The one-time notice about the file store.
fn notices(stderr: &str) -> usize {
    stderr.matches("passwords are stored in").count()
}

fn server(s: &Setup) -> String {
    format!("127.0.0.1:{}", s.server.port)
}

fn put(s: &Setup, src: &Path, name: &str, env: &[(&str, &str)]) -> Out {
    s.client
        .run_env(&["put", src.to_str().unwrap(), &s.url(name)], env)
}

#[test]
fn login_put_logout_with_the_file_store() {
    let s = protected(false);
    let src = s.local("up.bin");
    random_file(&src, 100_000, 7);

    let out = s.client.run_env(
        &["--json", "login", &s.url("")],
        &[("FTS_CREDENTIAL_STORE", "file"), ("FTS_PASSWORD", PW)],
    );
    out.ok();
    let v = out.json();
    assert_eq!(v["server"], server(&s));
    assert_eq!(v["stored"], serde_json::json!(["access"]));
    assert_eq!(v["backend"], "file");
    let file = creds_file(&s);
    assert_eq!(v["path"], file.to_str().unwrap());
    assert_eq!(mode(&file), 0o600);
    assert_eq!(notices(&out.stderr), 1, "{}", out.stderr);

    // No FTS_PASSWORD, no terminal: the stored password is used, quietly.
    let out = put(&s, &src, "up.bin", &[]);
    out.ok();
    assert_eq!(notices(&out.stderr), 0, "{}", out.stderr);
    assert_eq!(hash(&s.root().join("up.bin")), hash(&src));

    let out = s.run(&["--json", "logout", &s.url("")]);
    out.ok();
    assert_eq!(out.json()["server"], server(&s));
    assert_eq!(out.json()["removed"], 1);
    assert!(!file.exists(), "the emptied credentials file is removed");

    let out = put(&s, &src, "again.bin", &[]);
    out.code(4);
    assert!(out.stderr.contains("FTS_PASSWORD"), "{}", out.stderr);
    assert!(out.stderr.contains("fts login"), "{}", out.stderr);
    assert!(!s.root().join("again.bin").exists());

    // Logging out twice is fine, and says so.
    let out = s.run(&["logout", &s.url("")]);
    out.ok();
    assert!(out.stdout.contains("nothing stored for"), "{}", out.stdout);
}

#[test]
fn human_login_output_and_quiet() {
    let s = protected(false);
    let out = s
        .client
        .run_env(&["login", &s.url("")], &[("FTS_PASSWORD", PW)]);
    out.ok();
    assert!(
        out.stdout
            .contains(&format!("stored the access password for {}", server(&s))),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("(mode 0600)"), "{}", out.stdout);
    assert_eq!(notices(&out.stderr), 1, "{}", out.stderr);

    // -q: nothing but errors.
    let out = s
        .client
        .run_env(&["-q", "login", &s.url("")], &[("FTS_PASSWORD", PW)]);
    out.ok();
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "");
}

#[test]
fn a_refused_password_is_not_stored() {
    let s = protected(false);
    let out = s.client.run_env(
        &["--json", "login", &s.url("")],
        &[("FTS_PASSWORD", "not it")],
    );
    out.code(4);
    assert_eq!(out.err_json()["error"]["kind"], "auth");
    assert!(!creds_file(&s).exists());

    // Nothing to try: login never takes the password from the store, and
    // without a terminal it cannot prompt.
    let out = s.run(&["login", &s.url("")]);
    out.code(4);
    assert!(out.stderr.contains("FTS_PASSWORD"), "{}", out.stderr);
    assert!(!creds_file(&s).exists());

    // A wrong password does not replace a right one already stored.
    s.client
        .run_env(&["login", &s.url("")], &[("FTS_PASSWORD", PW)])
        .ok();
    s.client
        .run_env(&["login", &s.url("")], &[("FTS_PASSWORD", "not it")])
        .code(4);
    s.run(&["ls", &s.url("")]).ok();
}

#[test]
fn login_admin_then_rm_without_the_variable() {
    let s = protected(true);
    std::fs::write(s.root().join("victim"), b"v").unwrap();

    // A wrong admin password: exit 4, and the right access password is
    // not stored either.
    let out = s.client.run_env(
        &["login", "--admin", &s.url("")],
        &[("FTS_PASSWORD", PW), ("FTS_ADMIN_PASSWORD", "nope")],
    );
    out.code(4);
    assert!(!creds_file(&s).exists());

    let pwf = secret_file(s.tmp.path(), "cpw", PW);
    let out = s.client.run_env(
        &[
            "--json",
            "--password-file",
            pwf.to_str().unwrap(),
            "login",
            "--admin",
            &s.url(""),
        ],
        &[("FTS_ADMIN_PASSWORD", ADMIN)],
    );
    out.ok();
    assert_eq!(out.json()["stored"], serde_json::json!(["access", "admin"]));

    let out = s.run(&["--json", "rm", &s.url("victim")]);
    out.ok();
    assert_eq!(out.json()["files_deleted"], 1);
    assert!(!s.root().join("victim").exists());

    let out = s.run(&["--json", "logout", &s.url("")]);
    out.ok();
    assert_eq!(out.json()["removed"], 2);
    std::fs::write(s.root().join("victim"), b"v").unwrap();
    let out = s
        .client
        .run_env(&["rm", &s.url("victim")], &[("FTS_PASSWORD", PW)]);
    out.code(4);
    assert!(out.stderr.contains("FTS_ADMIN_PASSWORD"), "{}", out.stderr);
    assert!(out.stderr.contains("fts login --admin"), "{}", out.stderr);
    assert!(s.root().join("victim").exists());
}

#[test]
fn login_to_an_open_server_stores_nothing() {
    let s = Setup::new(&[]);
    let out = s.run(&["--json", "login", &s.url("")]);
    out.ok();
    assert_eq!(out.json()["stored"], serde_json::json!([]));
    assert!(!creds_file(&s).exists());
    let out = s.run(&["login", &s.url("")]);
    out.ok();
    assert!(
        out.stdout.contains("asks for no password"),
        "{}",
        out.stdout
    );
    // No admin password configured: admin login is refused (exit 5).
    s.client
        .run_env(
            &["login", "--admin", &s.url("")],
            &[("FTS_ADMIN_PASSWORD", "x")],
        )
        .code(5);
    assert!(!creds_file(&s).exists());
}

#[test]
fn flags_and_environment_override_the_store() {
    let s = protected(false);
    std::fs::write(s.root().join("f"), b"data").unwrap();
    s.client
        .run_env(&["login", &s.url("")], &[("FTS_PASSWORD", PW)])
        .ok();
    s.run(&["ls", &s.url("")]).ok();

    // A wrong FTS_PASSWORD wins over the right stored one.
    let out = s
        .client
        .run_env(&["ls", &s.url("")], &[("FTS_PASSWORD", "wrong")]);
    out.code(4);
    assert!(out.stderr.contains("wrong password"), "{}", out.stderr);
    // So does a wrong --password-file.
    let bad = secret_file(s.tmp.path(), "bad", "wrong too");
    s.run(&["--password-file", bad.to_str().unwrap(), "ls", &s.url("")])
        .code(4);
    // The store is untouched by either.
    s.run(&["ls", &s.url("")]).ok();
}

#[test]
fn a_broken_store_does_not_break_other_sources() {
    let s = protected(false);
    std::fs::write(s.root().join("f"), b"data").unwrap();
    let env = [("FTS_PASSWORD", PW), ("FTS_CREDENTIAL_STORE", "bogus")];
    // Commands that need no store work; login and logout refuse (exit 2).
    s.client.run_env(&["ls", &s.url("")], &env).ok();
    let out = s.client.run_env(&["login", &s.url("")], &env);
    out.code(2);
    assert!(
        out.stderr.contains("FTS_CREDENTIAL_STORE"),
        "{}",
        out.stderr
    );
    s.client.run_env(&["logout", &s.url("")], &env).code(2);

    // An unreadable credentials file counts as nothing stored.
    let file = creds_file(&s);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "{not json").unwrap();
    s.client
        .run_env(&["ls", &s.url("")], &[("FTS_PASSWORD", PW)])
        .ok();
    s.run(&["ls", &s.url("")]).code(4);
}

/// Runs its closure on drop: a failing test must not leave passwords in
/// the machine-wide keyring.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// A command in `auto` mode: the real keyring when it works.
fn auto_cmd(s: &Setup, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = s.client.cmd();
    c.env_remove("FTS_CREDENTIAL_STORE").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run(c)
}

/// Kernel keys the probe left behind (none, if /proc/keys is not there).
fn leftover_probe_keys() -> Vec<String> {
    std::fs::read_to_string("/proc/keys")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("keyring-rs:fts-probe-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn auto_store_works_with_whatever_this_machine_has() {
    let s = protected(false);
    let src = s.local("up.bin");
    random_file(&src, 10_000, 3);
    // The server's port is free now, but an earlier run may have stored a
    // password for the same address in the machine-wide keyring.
    auto_cmd(&s, &["logout", &s.url("")], &[]).ok();
    let _logout = OnDrop(|| {
        auto_cmd(&s, &["logout", &s.url("")], &[]);
    });

    let out = auto_cmd(
        &s,
        &["--json", "login", &s.url("")],
        &[("FTS_PASSWORD", PW)],
    );
    out.ok();
    let v = out.json();
    eprintln!("auto mode chose: {v}; stderr: {}", out.stderr);
    match v["backend"].as_str().unwrap() {
        "keyring" => {
            assert_eq!(v["path"], serde_json::Value::Null);
            assert_eq!(notices(&out.stderr), 0, "{}", out.stderr);
            assert!(!creds_file(&s).exists());
        }
        "file" => {
            assert!(
                out.stderr.contains("no working system keyring"),
                "{}",
                out.stderr
            );
            assert_eq!(notices(&out.stderr), 1, "{}", out.stderr);
            assert_eq!(mode(&creds_file(&s)), 0o600);
        }
        other => panic!("unknown backend {other}"),
    }

    auto_cmd(&s, &["put", src.to_str().unwrap(), &s.url("up.bin")], &[]).ok();
    assert_eq!(hash(&s.root().join("up.bin")), hash(&src));

    let out = auto_cmd(&s, &["--json", "logout", &s.url("")], &[]);
    out.ok();
    assert_eq!(out.json()["removed"], 1);
    assert!(!creds_file(&s).exists());
    auto_cmd(
        &s,
        &["put", src.to_str().unwrap(), &s.url("again.bin")],
        &[],
    )
    .code(4);

    // Whatever the probe wrote is gone (the kernel collects unlinked keys
    // shortly after).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !leftover_probe_keys().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(leftover_probe_keys(), Vec::<String>::new());
}

/// The kernel keyring for real. A process without a session keyring (cron,
/// CI, containers: this test's own case, often) cannot use it, so each fts
/// here first joins one named session keyring, as the processes of one
/// login session share theirs. Skipped where keyctl is not allowed.
#[cfg(target_os = "linux")]
#[test]
fn kernel_keyring_in_a_session() {
    use std::os::unix::process::CommandExt;
    let s = protected(true);
    std::fs::write(s.root().join("victim"), b"v").unwrap();
    let name = std::ffi::CString::new(format!("fts-test-{}-{}", std::process::id(), s.server.port))
        .unwrap();
    let in_session = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = s.client.cmd();
        c.env("FTS_CREDENTIAL_STORE", "keyring").args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let name = name.clone();
        // SAFETY: between fork and exec only a raw system call runs; the
        // name was allocated before the fork.
        unsafe {
            c.pre_exec(move || {
                let r = libc::syscall(
                    libc::SYS_keyctl,
                    libc::KEYCTL_JOIN_SESSION_KEYRING,
                    name.as_ptr(),
                );
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match c.output() {
            Ok(o) => Some(Out {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            }),
            Err(e) => {
                eprintln!("SKIPPED: cannot join a session keyring ({e})");
                None
            }
        }
    };
    let url = s.url("");
    let Some(out) = in_session(&["logout", &url], &[]) else {
        return;
    };
    out.ok();
    let _logout = OnDrop(|| {
        in_session(&["logout", &url], &[]);
    });

    let out = in_session(
        &["--json", "login", "--admin", &url],
        &[("FTS_PASSWORD", PW), ("FTS_ADMIN_PASSWORD", ADMIN)],
    )
    .unwrap();
    out.ok();
    let v = out.json();
    assert_eq!(v["backend"], "keyring");
    assert_eq!(v["stored"], serde_json::json!(["access", "admin"]));
    assert_eq!(notices(&out.stderr), 0, "{}", out.stderr);
    assert!(!creds_file(&s).exists());

    let src = s.local("k.bin");
    random_file(&src, 5_000, 9);
    in_session(&["put", src.to_str().unwrap(), &s.url("k.bin")], &[])
        .unwrap()
        .ok();
    assert_eq!(hash(&s.root().join("k.bin")), hash(&src));
    in_session(&["rm", &s.url("victim")], &[]).unwrap().ok();
    assert!(!s.root().join("victim").exists());

    let out = in_session(&["--json", "logout", &url], &[]).unwrap();
    out.ok();
    assert_eq!(out.json()["removed"], 2);
    in_session(&["ls", &url], &[]).unwrap().code(4);
}
