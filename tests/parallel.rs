//! `--parallel N`: several files in flight, each on its own connection, on
//! loopback and through a slow, latent link; one file failing leaves the
//! others intact and makes the run partial (exit 9).

mod common;

use common::wan::{WanOpts, WanProxy};
use common::*;
use std::path::Path;

const PAR: &str = "4";

fn connections(s: &Setup) -> u64 {
    let j = s.run(&["--json", "stats", &s.url("")]).ok().json();
    j["totals"]["connections"].as_u64().unwrap()
}

fn make_files(dir: &Path, n: usize, size: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("f{i}.bin"));
            random_file(&p, size + i * 4099, i as u64 + 7);
            p.to_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn put_get_and_sync_keep_several_files_in_flight() {
    let s = Setup::new(&[]);
    let src = s.local("src");
    std::fs::create_dir_all(&src).unwrap();
    let files = make_files(&src, 8, 3 << 20);
    std::fs::create_dir_all(s.root().join("up")).unwrap();

    let before = connections(&s);
    let mut args = vec!["--json", "put", "--parallel", "4"];
    args.extend(files.iter().map(String::as_str));
    let up = s.url("up/");
    args.push(&up);
    let j = s.run(&args).ok().json();
    assert_eq!(j["files_transferred"], 8, "{j}");
    // One connection for the stats call, four for the put.
    assert_eq!(connections(&s) - before, 1 + 4);
    for i in 0..8 {
        let name = format!("f{i}.bin");
        assert_eq!(
            hash(&s.root().join("up").join(&name)),
            hash(&src.join(&name))
        );
    }

    let back = s.local("back");
    std::fs::create_dir_all(&back).unwrap();
    let j = s
        .run(&[
            "--json",
            "get",
            "-r",
            "--parallel",
            "3",
            &s.url("up"),
            back.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(j["files_transferred"], 8, "{j}");
    assert_eq!(tree(&back.join("up")), tree(&s.root().join("up")));

    // A sync with directories: their times are set after every file.
    let t = s.local("tree");
    for d in 0..3 {
        make_files(&t.join(format!("d{d}")), 4, 100_000);
        set_mtime(&t.join(format!("d{d}")), 1_600_000_000 + d);
    }
    let j = s
        .run(&[
            "--json",
            "sync",
            "--parallel",
            "4",
            t.to_str().unwrap(),
            &s.url("mirror"),
        ])
        .ok()
        .json();
    assert_eq!(j["files_transferred"], 12, "{j}");
    assert_eq!(tree(&s.root().join("mirror")), tree(&t));
    for d in 0..3 {
        let name = format!("d{d}");
        assert_eq!(
            mtime(&s.root().join("mirror").join(&name)),
            mtime(&t.join(&name))
        );
    }
}

#[test]
fn one_failing_file_makes_a_parallel_run_partial_and_spares_the_others() {
    let s = Setup::new(&[]);
    let src = s.local("src");
    std::fs::create_dir_all(&src).unwrap();
    make_files(&src, 6, 1 << 20);
    std::fs::create_dir_all(s.root().join("up")).unwrap();
    s.run(&["put", "-r", src.to_str().unwrap(), &s.url("up/")])
        .ok();

    // Locally, f3.bin's place is taken by a directory with something in it.
    let dest = s.local("dest");
    std::fs::create_dir_all(dest.join("src/f3.bin/keep")).unwrap();
    let out = s.run(&[
        "--json",
        "get",
        "-r",
        "--parallel",
        "3",
        &s.url("up/src"),
        dest.to_str().unwrap(),
    ]);
    out.code(9);
    let j = out.json();
    assert_eq!(j["files_transferred"], 5, "{j}");
    let errors = j["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{j}");
    assert!(
        errors[0]["path"].as_str().unwrap().ends_with("f3.bin"),
        "{j}"
    );
    for i in [0, 1, 2, 4, 5] {
        let name = format!("f{i}.bin");
        assert_eq!(hash(&dest.join("src").join(&name)), hash(&src.join(&name)));
    }
    assert!(dest.join("src/f3.bin/keep").is_dir());
    assert_no_temp_files(&dest);
}

#[test]
fn parallel_transfers_cross_a_slow_latent_link_intact() {
    let s = Setup::new(&["--timeout", "2"]);
    let proxy = WanProxy::start(s.server.addr.parse().unwrap(), WanOpts::wan(20, 2_000_000));
    let url = |p: &str| format!("fts://{}/{p}", proxy.host_port());
    let src = s.local("src");
    std::fs::create_dir_all(&src).unwrap();
    let files = make_files(&src, 4, 1 << 20);
    std::fs::create_dir_all(s.root().join("up")).unwrap();
    let mut args = vec!["--json", "--timeout", "2", "put", "--parallel", PAR];
    args.extend(files.iter().map(String::as_str));
    let up = url("up/");
    args.push(&up);
    let j = s.run(&args).ok().json();
    assert_eq!(j["files_transferred"], 4, "{j}");
    let back = s.local("back");
    std::fs::create_dir_all(&back).unwrap();
    let j = s
        .run(&[
            "--json",
            "--timeout",
            "2",
            "get",
            "-r",
            "--parallel",
            "4",
            &url("up"),
            back.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(j["files_transferred"], 4, "{j}");
    assert_eq!(tree(&back.join("up")), tree(&src));
    assert!(proxy.bytes_up() > 4 << 20);
}
