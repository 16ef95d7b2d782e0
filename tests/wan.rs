//! Transfers over a slow, latent link (the userspace WAN proxy of
//! tests/common/wan.rs), with `--timeout 2` on both sides: every transfer
//! here lasts well beyond four times the timeout, so a timeout that
//! measures length instead of silence fails them. A stalled link must still
//! be detected within the timeout, and the next run must resume.
//!
//! The assertions are about behaviour (bytes identical, exit codes, how
//! long a stall takes to notice); durations are lower bounds that prove
//! the transfer really outlasted the timeout.

mod common;
use common::wan::{WanOpts, WanProxy};
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The client's and the server's `--timeout` (the server waits twice as
/// long through silence).
const TIMEOUT: &str = "2";
/// 2 MB/s each way with 20 ms one way: about 10 s for [`BIG`] bytes.
const RATE: u64 = 2_000_000;
const BIG: usize = 20 << 20;
/// What "outlasted the timeout" means here: four times it.
const LONG: Duration = Duration::from_secs(8);
const PW: &str = "slow-link-password";

fn slow_link() -> WanOpts {
    WanOpts::wan(20, RATE)
}

/// A server (with `--timeout 2`) behind a WAN proxy.
struct Wan {
    s: Setup,
    proxy: WanProxy,
}

impl Wan {
    fn new(opts: WanOpts) -> Wan {
        Self::with(opts, &[])
    }

    fn with(opts: WanOpts, extra: &[&str]) -> Wan {
        let mut args = vec!["--timeout", TIMEOUT];
        args.extend_from_slice(extra);
        let s = Setup::new(&args);
        let proxy = WanProxy::start(s.server.addr.parse().unwrap(), opts);
        Wan { s, proxy }
    }

    fn url(&self, path: &str) -> String {
        format!("fts://{}/{path}", self.proxy.host_port())
    }

    /// `fts --json --timeout 2 ARGS…` through the proxy, and how long it took.
    fn run(&self, args: &[&str]) -> (Out, Duration) {
        let mut full = vec!["--json", "--timeout", TIMEOUT];
        full.extend_from_slice(args);
        let t = Instant::now();
        let out = self.s.run(&full);
        (out, t.elapsed())
    }

    /// Like [`Wan::run`], but must succeed and outlast the timeout; the
    /// transfer report.
    #[track_caller]
    fn long_ok(&self, args: &[&str]) -> Value {
        let (out, took) = self.run(args);
        out.ok();
        assert!(
            took >= LONG,
            "took only {took:?}: the link is not slow enough"
        );
        out.json()
    }
}

#[test]
fn put_and_get_outlast_the_timeout() {
    let w = Wan::new(slow_link());
    let src = w.s.local("big.bin");
    random_file(&src, BIG, 1);
    let r = w.long_ok(&["put", src.to_str().unwrap(), &w.url("")]);
    assert_eq!(r["files_transferred"], 1);
    assert_eq!(hash(&w.s.root().join("big.bin")), hash(&src));

    let back = w.s.local("back.bin");
    let r = w.long_ok(&["get", &w.url("big.bin"), back.to_str().unwrap()]);
    assert_eq!(r["files_transferred"], 1);
    assert_eq!(hash(&back), hash(&src));
}

/// A tree of a few big and many small files.
fn make_tree(dir: &Path) {
    for i in 0..5 {
        random_file(&dir.join(format!("big/{i}.bin")), 4 << 20, 10 + i);
    }
    for i in 0..40 {
        random_file(&dir.join(format!("small/{}/{i}.txt", i % 4)), 3000, 100 + i);
    }
}

#[test]
fn sync_push_and_pull_outlast_the_timeout() {
    let w = Wan::new(slow_link());
    let src = w.s.local("tree");
    make_tree(&src);
    let r = w.long_ok(&["sync", src.to_str().unwrap(), &w.url("tree")]);
    assert_eq!(r["files_transferred"], 45);
    assert_eq!(tree(&w.s.root().join("tree")), tree(&src));

    let pulled = w.s.local("pulled");
    let r = w.long_ok(&["sync", &w.url("tree"), pulled.to_str().unwrap()]);
    assert_eq!(r["files_transferred"], 45);
    assert_eq!(tree(&pulled), tree(&src));
}

/// `old` and a `new` version that keeps all of it and appends enough new
/// data that even the delta takes longer than the timeout.
fn versions(old: &Path, new: &Path) {
    random_file(old, 12 << 20, 7);
    random_file(new, 16 << 20, 8);
    let mut all = std::fs::read(old).unwrap();
    all.extend(std::fs::read(new).unwrap());
    std::fs::write(new, all).unwrap();
}

#[test]
fn delta_put_and_get_outlast_the_timeout() {
    let w = Wan::new(slow_link());
    let (old, new) = (w.s.local("old.bin"), w.s.local("new.bin"));
    versions(&old, &new);
    // Put: the server has the old version.
    std::fs::copy(&old, w.s.root().join("f.bin")).unwrap();
    let r = w.long_ok(&["put", new.to_str().unwrap(), &w.url("f.bin")]);
    assert!(r["matched_bytes"].as_u64().unwrap() >= 12 << 20, "{r}");
    assert_eq!(hash(&w.s.root().join("f.bin")), hash(&new));
    // Get: the client has the old version, the server the new one.
    let mine = w.s.local("mine.bin");
    std::fs::copy(&old, &mine).unwrap();
    let r = w.long_ok(&["get", &w.url("f.bin"), mine.to_str().unwrap()]);
    assert!(r["matched_bytes"].as_u64().unwrap() >= 12 << 20, "{r}");
    assert_eq!(hash(&mine), hash(&new));
}

/// Runs `fts ARGS` through a proxy that stalls; returns the result and how
/// long after the stall began the client gave up.
fn stalled_run(w: &Wan, args: &[&str]) -> (Out, Duration) {
    let (out, gave_up, stalled_at) = std::thread::scope(|sc| {
        let watcher = sc.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !w.proxy.stalled() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            Instant::now()
        });
        let (out, _) = w.run(args);
        let gave_up = Instant::now();
        (out, gave_up, watcher.join().unwrap())
    });
    assert!(w.proxy.stalled(), "the proxy never stalled: {}", out.stderr);
    (out, gave_up.saturating_duration_since(stalled_at))
}

#[test]
fn a_stalled_put_is_detected_in_time_and_the_next_run_resumes() {
    let opts = WanOpts {
        stall_up_after: Some(6 << 20),
        ..slow_link()
    };
    let w = Wan::new(opts);
    let src = w.s.local("big.bin");
    random_file(&src, 24 << 20, 3);
    let (out, noticed) = stalled_run(&w, &["put", src.to_str().unwrap(), &w.url("")]);
    out.code(6);
    assert!(out.err_message().contains("timed out"), "{}", out.stderr);
    // Within the timeout (2 s) plus 2 s.
    assert!(
        noticed <= Duration::from_secs(4),
        "noticed after {noticed:?}"
    );
    assert!(!w.s.root().join("big.bin").exists());

    // The link recovers; the next run (at once, while the server may still
    // hold the cut session) continues from what arrived.
    w.proxy.unstall();
    let r = w.long_ok(&["put", src.to_str().unwrap(), &w.url("")]);
    assert!(r["resumed_bytes"].as_u64().unwrap() > 1 << 20, "{r}");
    assert_eq!(hash(&w.s.root().join("big.bin")), hash(&src));
    assert_no_temp_files(w.s.root());
}

#[test]
fn a_stalled_get_is_detected_in_time_and_the_next_run_resumes() {
    let opts = WanOpts {
        stall_down_after: Some(6 << 20),
        ..slow_link()
    };
    let w = Wan::new(opts);
    random_file(&w.s.root().join("big.bin"), 24 << 20, 4);
    let dst = w.s.local("big.bin");
    let (out, noticed) = stalled_run(&w, &["get", &w.url("big.bin"), dst.to_str().unwrap()]);
    out.code(6);
    assert!(
        noticed <= Duration::from_secs(4),
        "noticed after {noticed:?}"
    );
    assert!(!dst.exists(), "a cut download left a file under its name");

    w.proxy.unstall();
    let r = w.long_ok(&["get", &w.url("big.bin"), dst.to_str().unwrap()]);
    assert!(r["resumed_bytes"].as_u64().unwrap() > 1 << 20, "{r}");
    assert_eq!(hash(&dst), hash(&w.s.root().join("big.bin")));
}

/// `curl` through the proxy, the way a browser downloads and uploads.
fn curl(args: &[&str]) -> (std::process::Output, Duration) {
    let t = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "-k", "--fail", "-u", &format!("u:{PW}")])
        .args(args)
        .output()
        .expect("curl (apt-get install curl)");
    (out, t.elapsed())
}

#[test]
fn https_download_and_upload_outlast_the_timeout() {
    let pw = secret_file(
        &std::env::temp_dir(),
        &format!("wan-pw-{}", std::process::id()),
        PW,
    );
    let w = Wan::with(slow_link(), &["--password-file", pw.to_str().unwrap()]);
    let _ = std::fs::remove_file(&pw);
    let base = format!("https://{}/files", w.proxy.host_port());

    random_file(&w.s.root().join("dl.bin"), BIG, 5);
    let got = w.s.local("dl.bin");
    let (out, took) = curl(&["-o", got.to_str().unwrap(), &format!("{base}/dl.bin")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took >= LONG, "took only {took:?}");
    assert_eq!(hash(&got), hash(&w.s.root().join("dl.bin")));

    let up = w.s.local("up.bin");
    random_file(&up, BIG, 6);
    let (out, took) = curl(&["-T", up.to_str().unwrap(), &format!("{base}/up.bin")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took >= LONG, "took only {took:?}");
    assert_eq!(hash(&w.s.root().join("up.bin")), hash(&up));
}

/// User + system CPU of a finished child, from `wait4`.
fn wait_with_cpu(child: std::process::Child) -> (i32, Duration) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; the pid is our own unreaped child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, tv(ru.ru_utime) + tv(ru.ru_stime))
}

#[test]
fn bwlimit_paces_by_sleeping_and_keeps_the_rate() {
    // No delay or cap on the link: the proxy only counts what passes.
    let w = Wan::new(WanOpts::default());
    let src = w.s.local("big.bin");
    let rate = 5u64 << 20;
    random_file(&src, (rate * 20) as usize, 9);
    let mut c = w.s.client.cmd();
    c.args(["--json", "--timeout", TIMEOUT, "put", "--bwlimit", "5M"])
        .arg(&src)
        .arg(w.url(""))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let t = Instant::now();
    let child = c.spawn().unwrap();
    let (code, cpu) = std::thread::scope(|sc| {
        let waiter = sc.spawn(|| wait_with_cpu(child));
        let mut samples = Vec::new();
        while !waiter.is_finished() {
            samples.push((t.elapsed().as_secs_f64(), w.proxy.bytes_up()));
            std::thread::sleep(Duration::from_millis(100));
        }
        let wall = t.elapsed();
        let (code, cpu) = waiter.join().unwrap();
        assert!(wall >= Duration::from_secs(18), "took only {wall:?}");
        // CPU well below a busy loop: at most 15% of the wall time.
        assert!(
            cpu.as_secs_f64() <= 0.15 * wall.as_secs_f64(),
            "client used {cpu:?} of CPU in {wall:?}"
        );
        // Every 5 s window after the first second, and before the last
        // bytes went, is within 10% of 5 MiB/s.
        let last = samples.last().map_or(0, |s| s.1);
        let done_at = samples.iter().find(|s| s.1 == last).map_or(0.0, |s| s.0);
        let mut windows = 0;
        for (i, &(t0, b0)) in samples.iter().enumerate() {
            let Some(&(t1, b1)) = samples[i..].iter().find(|(t1, _)| *t1 >= t0 + 5.0) else {
                break;
            };
            if t0 < 1.0 || t1 >= done_at - 0.2 {
                continue;
            }
            let r = (b1 - b0) as f64 / (t1 - t0);
            assert!(
                (0.9..=1.1).contains(&(r / rate as f64)),
                "window at {t0:.1}s: {r:.0} B/s"
            );
            windows += 1;
        }
        assert!(windows > 50, "only {windows} windows measured");
        (code, cpu)
    });
    assert_eq!(code, 0, "cpu {cpu:?}");
    assert_eq!(hash(&w.s.root().join("big.bin")), hash(&src));
}
