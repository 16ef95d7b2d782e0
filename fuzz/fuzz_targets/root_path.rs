//! Arbitrary client paths into `root::components` / `normalize` and into
//! the resolution of a real share (`Root::resolve_existing`,
//! `resolve_for_write`) that holds a file, a directory, a link inside, a
//! link to a directory outside, a dangling link and a link loop.
//!
//! Asserts: components are never empty, `.`, `..`, or contain `/` or NUL;
//! a normalized path never starts with `/` and never holds `..`;
//! normalizing is idempotent; a path containing a `..` component is
//! always refused; a resolved path always lies inside the share.
#![no_main]

use fts::fuzzing::Root;
use fts::paths::{components, normalize};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Share {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    root: Root,
    canon: PathBuf,
}

fn share() -> &'static Share {
    static S: OnceLock<Share> = OnceLock::new();
    S.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let r = d.path();
        std::fs::write(r.join("f"), b"f").unwrap();
        std::fs::create_dir(r.join("d")).unwrap();
        std::fs::write(r.join("d/g"), b"g").unwrap();
        std::os::unix::fs::symlink("f", r.join("in")).unwrap();
        std::os::unix::fs::symlink("../f", r.join("d/up")).unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("out")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", r.join("dangling")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        let root = Root::open(r).unwrap();
        let canon = std::fs::canonicalize(r).unwrap();
        Share {
            _dirs: (d, outside),
            root,
            canon,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(rel) = std::str::from_utf8(data) else {
        return;
    };
    let comps = components(rel);
    if rel.split('/').any(|c| c == "..") || rel.starts_with('/') || rel.contains('\0') {
        assert!(comps.is_err(), "{rel:?} accepted");
    }
    let Ok(comps) = comps else {
        assert!(normalize(rel).is_err());
        return;
    };
    for c in &comps {
        assert!(!c.is_empty() && *c != "." && *c != "..");
        assert!(!c.contains('/') && !c.contains('\0'));
    }
    let n = normalize(rel).expect("components accepted it");
    assert!(!n.starts_with('/'));
    assert!(n.split('/').all(|c| c != ".." && c != "."));
    assert_eq!(normalize(&n).unwrap(), n, "normalize not idempotent");
    assert_eq!(components(&n).unwrap(), comps);

    let s = share();
    if let Ok(p) = s.root.resolve_existing(rel) {
        assert!(p.starts_with(&s.canon), "{rel:?} resolved to {p:?}");
    }
    if let Ok(p) = s.root.resolve_for_write(rel) {
        assert!(p.starts_with(&s.canon), "{rel:?} to be written at {p:?}");
        assert_ne!(p, s.canon);
        // What is there now, if a link, must lead inside too.
        if let Ok(c) = std::fs::canonicalize(&p) {
            assert!(c.starts_with(&s.canon), "{rel:?} writes through to {c:?}");
        }
    }
});
