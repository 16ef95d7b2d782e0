//! The web dashboard in a real browser: Debian's Chromium driven by
//! playwright-core (tests/browser/dashboard.mjs) against a real `fts serve`
//! with an access and an admin password, while a slow `fts put` runs. The
//! script watches the upload's progress grow live, logs in as admin, warns
//! and kicks the uploader, downloads and uploads a file through the page and
//! checks the layout on a phone-sized screen; this test checks the other
//! side: the kicked client's exit code and messages, the files on disk.
//! Screenshots and failure dumps go to target/browser-artifacts.
//!
//! Without node, `npm ci --prefix tests/browser` or /usr/bin/chromium the
//! test says why and passes, unless CI is set: then it fails.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const ACCESS_PW: &str = "br0wser access";
const ADMIN_PW: &str = "br0wser admin";
const CLIENT: &str = "put-client";
const WARN_TEXT: &str = "browser test warning: disk 97% full";
const KICK_REASON: &str = "browser test kick: maintenance";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("browser-artifacts")
}

/// Why the browser test cannot run here, if it cannot.
fn missing_tools() -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("node is not on PATH".into());
    }
    let pw = browser_dir().join("node_modules/playwright-core");
    if !pw.is_dir() {
        return Some(format!(
            "{} is missing (run `npm ci --prefix tests/browser`)",
            pw.display()
        ));
    }
    if !Path::new(CHROMIUM).exists() {
        return Some(format!(
            "{CHROMIUM} is missing (apt-get install chromium chromium-driver)"
        ));
    }
    None
}

/// A process other than fts (node) whose stdout and stderr are collected
/// as they come; stderr lines are echoed (seen with --nocapture) when
/// `echo` is set.
struct Proc {
    child: Child,
    what: &'static str,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(what: &'static str, mut c: Command, echo: bool) -> Proc {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let collect = |r: Box<dyn Read + Send>, echo: bool| {
            let buf = Arc::new(Mutex::new(String::new()));
            let b2 = buf.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    if echo {
                        eprintln!("{line}");
                    }
                    let mut b = b2.lock().unwrap();
                    b.push_str(&line);
                    b.push('\n');
                }
            });
            buf
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()), false);
        let stderr = collect(Box::new(child.stderr.take().unwrap()), echo);
        Proc {
            child,
            what,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The exit code, waiting at most `limit` (then the child is killed).
    #[track_caller]
    fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                return st.code().unwrap_or(-1);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} still running after {limit:?}; stdout: {}\nstderr: {}",
                    self.what,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `fts serve` knows `flag` (for flags still being added).
fn serve_has_flag(home: &Path, flag: &str) -> bool {
    let mut c = fts_cmd(home);
    c.args(["serve", "--help"]);
    run(c).stdout.contains(flag)
}

#[test]
fn dashboard_in_a_real_browser() {
    if let Some(why) = missing_tools() {
        if std::env::var_os("CI").is_some() {
            panic!("browser test cannot run under CI: {why}");
        }
        eprintln!("skipping the browser test: {why}");
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let access = secret_file(tmp.path(), "access.pw", ACCESS_PW);
    let admin = secret_file(tmp.path(), "admin.pw", ADMIN_PW);
    let mut args = vec![
        "--password-file",
        access.to_str().unwrap(),
        "--admin-password-file",
        admin.to_str().unwrap(),
    ];
    if serve_has_flag(tmp.path(), "--http-timeout") {
        args.extend(["--http-timeout", "5"]);
    }
    let s = Setup::new(&args);

    // A file to download through the page, one to upload, one to put slowly.
    let download_name = "download-me.bin";
    random_file(&s.root().join(download_name), 3 << 20, 11);
    let upload = s.local("from-the-browser.bin");
    random_file(&upload, 5 << 20, 12);
    let big = s.local("slow.bin");
    const BIG: u64 = 64 << 20;
    random_file(&big, BIG as usize, 13);

    let artifacts = artifacts_dir();
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();

    // ~16 s at 4 MiB/s: long enough for the page to watch, warn and kick.
    let url = s.url("");
    let big_path = big.to_str().unwrap();
    let mut put = Bg::start(
        &s,
        &["--name", CLIENT, "put", "--bwlimit", "4M", big_path, &url],
        &[("FTS_PASSWORD", ACCESS_PW)],
        false,
    );

    let mut node = {
        let mut c = Command::new("node");
        c.arg(browser_dir().join("dashboard.mjs"))
            .current_dir(browser_dir())
            .env(
                "FTS_WEB_URL",
                format!("https://127.0.0.1:{}/", s.server.port),
            )
            .env("FTS_ACCESS_PASSWORD", ACCESS_PW)
            .env("FTS_ADMIN_PASSWORD", ADMIN_PW)
            .env("FTS_ARTIFACTS", &artifacts)
            .env("FTS_UPLOAD_FILE", &upload)
            .env("FTS_DOWNLOAD_NAME", download_name)
            .env("FTS_CLIENT_NAME", CLIENT)
            .env("FTS_WARN_TEXT", WARN_TEXT)
            .env("FTS_KICK_REASON", KICK_REASON);
        Proc::spawn("node tests/browser/dashboard.mjs", c, true)
    };
    let code = node.wait(Duration::from_secs(180));
    let put_code = put.child.try_wait().unwrap().map(|s| s.code());
    assert_eq!(
        code,
        0,
        "the browser script failed (artifacts in {}):\n{}\nput client ({put_code:?}) stderr:\n{}",
        artifacts.display(),
        node.stderr(),
        put.stderr()
    );
    let out = node.stdout();
    let r: Value = serde_json::from_str(out.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("the script's last stdout line is not JSON ({e}): {out}"));
    eprintln!("browser results: {r}");

    // The page showed the upload with its real size, and it grew.
    assert_eq!(r["progress_max"].as_f64(), Some(BIG as f64), "{r}");
    let samples = r["progress_samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "{r}");
    assert!(r["warn_visible_before_login"] == false, "{r}");

    // Kicked from the page: exit 10, with the warning and the reason.
    let put_code = put.wait(Duration::from_secs(5));
    let err = put.stderr();
    assert_eq!(put_code, 10, "kicked put's exit code; stderr: {err}");
    assert!(err.contains(WARN_TEXT), "no warning in: {err}");
    assert!(err.contains(KICK_REASON), "no kick reason in: {err}");
    assert!(
        !s.root().join("slow.bin").exists(),
        "kicked upload completed"
    );

    // Uploaded through the page: in the root, byte-identical, no temp files.
    let landed = s.root().join("from-the-browser.bin");
    assert!(landed.exists(), "the page's upload is not in the root");
    assert_eq!(hash(&landed), hash(&upload));
    assert_no_temp_files(s.root());

    // Downloaded through the page: the same bytes as the served file.
    let saved = PathBuf::from(r["downloaded_path"].as_str().expect("downloaded_path"));
    assert_eq!(hash(&saved), hash(&s.root().join(download_name)));

    // The phone layout does not scroll sideways.
    let phone = &r["phone"];
    assert!(
        phone["scrollWidth"].as_f64() <= phone["innerWidth"].as_f64().map(|w| w + 1.0),
        "{phone}"
    );
    for f in [
        "01-dashboard.png",
        "02-progress.png",
        "03-admin.png",
        "04-kicked.png",
        "05-files.png",
        "06-phone.png",
    ] {
        assert!(artifacts.join(f).exists(), "no screenshot {f}");
    }
}
