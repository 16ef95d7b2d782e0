//! The committed man pages and shell completions must match what the
//! current clap definition generates. Regenerate with:
//! `cargo run -- generate-docs .`

mod common;
use std::path::Path;

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn man_pages_and_completions_are_current() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = common::fts_cmd(tmp.path());
    c.args(["generate-docs"]).arg(tmp.path());
    common::run(c).ok();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["man", "completions"] {
        let fresh = tmp.path().join(sub);
        let committed = repo.join(sub);
        assert_eq!(
            files(&fresh),
            files(&committed),
            "{sub}/: file list differs; run `cargo run -- generate-docs .`"
        );
        for f in files(&fresh) {
            let a = std::fs::read(fresh.join(&f)).unwrap();
            let b = std::fs::read(committed.join(&f)).unwrap();
            assert!(
                a == b,
                "{sub}/{f} is stale; run `cargo run -- generate-docs .`"
            );
        }
    }
    let man = std::fs::read_to_string(repo.join("man/fts.1")).unwrap();
    assert!(
        man.contains("Exit codes"),
        "the man page must document exit codes"
    );
}
