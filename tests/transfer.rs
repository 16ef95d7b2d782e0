//! put/get round trips through a real server: bytes, mtimes, modes, trees,
//! concurrency, bounded memory, single-file shares, graceful shutdown.

mod common;
use common::*;

fn roundtrip(s: &Setup, name: &str, size: usize) {
    let src = s.local(&format!("up/{name}"));
    random_file(&src, size, size as u64 + 7);
    set_mtime(&src, 1_600_000_000);
    std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let out = s.run(&["--json", "put", src.to_str().unwrap(), &s.url("")]);
    out.ok();
    let j = out.json();
    assert_eq!(j["files_total"], 1);
    assert_eq!(j["files_transferred"], 1);
    assert_eq!(j["bytes_transferred"], size as u64);
    assert!(j["wire_bytes_sent"].as_u64().unwrap() >= size as u64);
    let remote = s.root().join(name);
    assert_eq!(hash(&remote), hash(&src), "{name}: uploaded bytes differ");
    assert_eq!(
        mtime(&remote),
        mtime(&src),
        "{name}: mtime not preserved on upload"
    );
    assert_eq!(mode(&remote), 0o640);

    let back = s.local(&format!("down/{name}"));
    let out = s.run(&["--json", "get", &s.url(name), back.to_str().unwrap()]);
    out.ok();
    assert_eq!(out.json()["files_transferred"], 1);
    assert_eq!(hash(&back), hash(&src), "{name}: downloaded bytes differ");
    assert_eq!(
        mtime(&back),
        mtime(&src),
        "{name}: mtime not preserved on download"
    );
    assert_eq!(mode(&back), 0o640);
}

#[test]
fn empty_and_one_byte_files() {
    let s = Setup::new(&[]);
    roundtrip(&s, "empty", 0);
    roundtrip(&s, "one", 1);
    assert_no_temp_files(s.root());
}

#[test]
fn hundred_mib_file_with_bounded_server_memory() {
    let s = Setup::new(&[]);
    roundtrip(&s, "big.bin", 100 << 20);
    let peak = s.server.peak_rss_kib();
    assert!(
        peak < 64 * 1024,
        "server peak RSS {peak} KiB is not under 64 MiB"
    );
    assert_no_temp_files(s.root());
}

#[test]
fn directory_tree_recursive() {
    let s = Setup::new(&[]);
    let src = s.local("proj");
    random_file(&src.join("a.txt"), 10, 1);
    random_file(&src.join("sub/b.bin"), 70_000, 2);
    random_file(&src.join("sub/deeper/c"), 300_000, 3);
    random_file(&src.join("sub/deeper/empty"), 0, 4);
    std::fs::create_dir_all(src.join("emptydir")).unwrap();
    for (i, f) in ["a.txt", "sub/b.bin", "sub/deeper/c", "sub/deeper/empty"]
        .iter()
        .enumerate()
    {
        set_mtime(&src.join(f), 1_500_000_000 + i as i64);
    }
    set_mtime(&src.join("sub/deeper"), 1_400_000_000);

    // Without -r a directory is refused.
    s.run(&["put", src.to_str().unwrap(), &s.url("")]).code(2);

    let out = s.run(&["--json", "put", "-r", src.to_str().unwrap(), &s.url("")]);
    out.ok();
    assert_eq!(out.json()["files_transferred"], 4);
    assert_eq!(tree(&s.root().join("proj")), tree(&src));
    for f in ["a.txt", "sub/b.bin", "sub/deeper/c", "sub/deeper/empty"] {
        assert_eq!(
            mtime(&s.root().join("proj").join(f)),
            mtime(&src.join(f)),
            "{f}"
        );
    }
    assert_eq!(
        mtime(&s.root().join("proj/sub/deeper")),
        mtime(&src.join("sub/deeper"))
    );

    // Into a new name: the target becomes the copy (scp rule).
    s.run(&["put", "-r", src.to_str().unwrap(), &s.url("copy")])
        .ok();
    assert_eq!(tree(&s.root().join("copy")), tree(&src));

    // Back down, into an existing directory.
    let dl = s.local("dl");
    std::fs::create_dir_all(&dl).unwrap();
    let out = s.run(&["--json", "get", "-r", &s.url("proj"), dl.to_str().unwrap()]);
    out.ok();
    assert_eq!(out.json()["files_transferred"], 4);
    assert_eq!(tree(&dl.join("proj")), tree(&src));
    for f in ["a.txt", "sub/b.bin", "sub/deeper/c"] {
        assert_eq!(mtime(&dl.join("proj").join(f)), mtime(&src.join(f)), "{f}");
    }
    assert_eq!(
        mtime(&dl.join("proj/sub/deeper")),
        mtime(&src.join("sub/deeper"))
    );

    // The whole share into a new directory.
    let all = s.local("all");
    s.run(&["get", "-r", &s.url(""), all.to_str().unwrap()])
        .ok();
    assert_eq!(tree(&all), tree(s.root()));
    assert_no_temp_files(s.root());
}

#[test]
fn ls_json_lists_exactly_what_is_there() {
    let s = Setup::new(&[]);
    random_file(&s.root().join("x.bin"), 1234, 1);
    random_file(&s.root().join("d/y"), 5, 2);
    set_mtime(&s.root().join("x.bin"), 1_700_000_000);
    let out = s.run(&["--json", "ls", &s.url("")]);
    out.ok();
    let v = out.json();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2, "{v}");
    assert_eq!(arr[0]["path"], "d");
    assert_eq!(arr[0]["is_dir"], true);
    assert_eq!(arr[1]["path"], "x.bin");
    assert_eq!(arr[1]["size"], 1234);
    assert_eq!(arr[1]["is_dir"], false);
    assert_eq!(arr[1]["mtime"], "2023-11-14T22:13:20Z");

    let v = s.run(&["--json", "ls", "-r", &s.url("")]).json();
    let paths: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["d", "x.bin", "d/y"]);

    let v = s.run(&["--json", "ls", &s.url("d")]).json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["path"], "d/y");

    let human = s.run(&["ls", "-l", &s.url("")]);
    human.ok();
    assert!(
        human.stdout.contains("-rw-") && human.stdout.contains("x.bin"),
        "{}",
        human.stdout
    );
}

#[test]
fn twenty_concurrent_uploads() {
    let s = Setup::new(&[]);
    let mut children = Vec::new();
    for i in 0..20 {
        let f = s.local(&format!("c/f{i}"));
        random_file(&f, 200_000 + i * 10_007, i as u64);
        let mut c = s.client.cmd();
        c.args(["put", "-q", f.to_str().unwrap(), &s.url("")]);
        children.push((f, c.spawn().unwrap()));
    }
    for (f, mut ch) in children {
        assert!(
            ch.wait().unwrap().success(),
            "upload of {} failed",
            f.display()
        );
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(hash(&s.root().join(&name)), hash(&f), "{name}");
    }
    assert_no_temp_files(s.root());
}

#[test]
fn single_file_share() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("only.iso");
    random_file(&file, 50_000, 9);
    std::fs::write(tmp.path().join("neighbour"), b"not shared").unwrap();
    let shome = tmp.path().join("home");
    let server = Server::start(&file, &shome, &[]);
    let c = Client::new();
    let v = c.run(&["--json", "ls", &server.url("")]).json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["path"], "only.iso");
    let dl = tmp.path().join("dl");
    std::fs::create_dir(&dl).unwrap();
    c.run(&["get", &server.url(""), dl.to_str().unwrap()]).ok();
    assert_eq!(hash(&dl.join("only.iso")), hash(&file));
    c.run(&["get", &server.url("neighbour"), dl.to_str().unwrap()])
        .code(3);
    assert!(!dl.join("neighbour").exists());
}

#[test]
fn sigterm_mid_upload_leaves_no_partial_file() {
    let s = Setup::new(&["--shutdown-grace", "0"]);
    let src = s.local("huge");
    random_file(&src, 400 << 20, 5);
    let mut c = s.client.cmd();
    c.args(["put", "-q", src.to_str().unwrap(), &s.url("")]);
    let mut child = c.spawn().unwrap();
    s.server.wait_event("connect", |v| v["event"] == "connect");
    std::thread::sleep(std::time::Duration::from_millis(150));
    let mut server = s.server;
    let st = server.terminate();
    assert!(st.success(), "server exit status {st:?}");
    let code = child.wait().unwrap().code();
    let target = server.root.join("huge");
    if code == Some(0) {
        // The upload won the race; then it must be complete.
        assert_eq!(hash(&target), hash(&src));
    } else {
        assert_eq!(code, Some(6), "client should report a lost connection");
        assert!(
            !target.exists(),
            "a partial upload appeared under the real name"
        );
    }
    assert_no_temp_files(&server.root);
}
