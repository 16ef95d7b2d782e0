//! Many files in bounded memory: a 200,000-file sync in both directions,
//! with the peak resident memory of client and server asserted (not the
//! time), and an unchanged re-sync that costs one digest per directory.

mod common;

use common::*;
use std::path::Path;
use std::process::Stdio;

const FILES: usize = 200_000;
const PER_DIR: usize = 100;
/// The goal for 1,000,000 files; 200,000 must be well inside it.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
const ADMIN: &str = "scale-admin";

/// `FILES` 16-byte files, `PER_DIR` per directory.
fn make_tree(top: &Path) {
    for d in 0..FILES / PER_DIR {
        let dir = top.join(format!("d{d:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..PER_DIR {
            std::fs::write(
                dir.join(format!("f{f:03}")),
                format!("{d:06}/{f:03}-content"),
            )
            .unwrap();
        }
    }
}

/// Runs the client to the end and returns its output and peak resident
/// memory (the kernel's ru_maxrss of the reaped child, in KiB).
// The child is reaped with wait4, which also gives its rusage.
#[allow(clippy::zombie_processes)]
fn run_measured(c: &Client, args: &[&str]) -> (Out, u64) {
    let child = c
        .cmd()
        .env("FTS_ADMIN_PASSWORD", ADMIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (mut so, mut se) = (child.stdout.unwrap(), child.stderr.unwrap());
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut se, &mut s).unwrap();
        s
    });
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut so, &mut stdout).unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped; both pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let out = Out {
        code,
        stdout,
        stderr: errs.join().unwrap(),
    };
    (out, usage.ru_maxrss as u64)
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for d in std::fs::read_dir(dir).unwrap() {
        let p = d.unwrap().path();
        if p.is_dir() {
            n += count_files(&p);
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn a_200k_file_sync_stays_in_bounded_memory_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let adm = secret_file(tmp.path(), "adm", ADMIN);
    // tmpfs where there is one: the test is about memory, and 200,000
    // files on a disk take a minute to write before it even starts.
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let s = Setup::new_in(&base, &["--admin-password-file", adm.to_str().unwrap()]);
    let src = s.local("tree");
    make_tree(&src);

    let url = s.url("mirror");

    let (out, client_kib) =
        run_measured(&s.client, &["--json", "sync", src.to_str().unwrap(), &url]);
    out.ok();
    let j = out.json();
    assert_eq!(j["files_transferred"], FILES as u64, "{j}");
    let server_kib = s.server.peak_rss_kib();
    eprintln!("push: client peak {client_kib} KiB, server peak {server_kib} KiB");
    assert!(
        client_kib < RSS_LIMIT_KIB,
        "client peak RSS {client_kib} KiB"
    );
    assert!(
        server_kib < RSS_LIMIT_KIB,
        "server peak RSS {server_kib} KiB"
    );
    let dst = s.root().join("mirror");
    assert_eq!(count_files(&dst), FILES);
    for probe in ["d0000/f000", "d1234/f056", "d1999/f099"] {
        assert_eq!(
            std::fs::read(dst.join(probe)).unwrap(),
            std::fs::read(src.join(probe)).unwrap()
        );
        assert_eq!(mtime(&dst.join(probe)), mtime(&src.join(probe)));
    }

    // Unchanged: every directory is settled by its digest, so what comes
    // back is a few dozen bytes per directory, not a listing of every file
    // (that would be over 10 MB).

    let (out, _) = run_measured(&s.client, &["--json", "sync", src.to_str().unwrap(), &url]);
    let j = out.ok().json();
    assert_eq!(j["files_transferred"], 0, "{j}");
    assert_eq!(j["files_skipped"], FILES as u64, "{j}");
    let received = j["wire_bytes_received"].as_u64().unwrap();
    let dirs = (FILES / PER_DIR) as u64;
    assert!(
        received < dirs * 120,
        "{received} bytes received for {dirs} unchanged directories"
    );

    // One file changed, one removed: only that directory is listed.
    std::fs::write(src.join("d0500/f001"), "changed content!").unwrap();
    std::fs::remove_file(src.join("d0700/f002")).unwrap();
    let (out, _) = run_measured(
        &s.client,
        &["--json", "sync", "--delete", src.to_str().unwrap(), &url],
    );
    let j = out.ok().json();
    assert_eq!(
        (j["files_transferred"].as_u64(), j["files_deleted"].as_u64()),
        (Some(1), Some(1)),
        "{j}"
    );
    assert_eq!(
        std::fs::read(dst.join("d0500/f001")).unwrap(),
        b"changed content!"
    );
    assert!(!dst.join("d0700/f002").exists());

    // And back: a pull into an empty directory, bounded the same way.
    let back = s.local("back");
    let (out, client_kib) =
        run_measured(&s.client, &["--json", "sync", &url, back.to_str().unwrap()]);
    let j = out.ok().json();
    assert_eq!(j["files_transferred"], (FILES - 1) as u64, "{j}");
    eprintln!(
        "pull: client peak {client_kib} KiB, server peak {} KiB",
        s.server.peak_rss_kib()
    );
    assert!(
        client_kib < RSS_LIMIT_KIB,
        "client peak RSS {client_kib} KiB"
    );
    assert!(s.server.peak_rss_kib() < RSS_LIMIT_KIB);

    assert_eq!(count_files(&back), FILES - 1);
    assert_eq!(
        std::fs::read(back.join("d1234/f056")).unwrap(),
        std::fs::read(src.join("d1234/f056")).unwrap()
    );
}
