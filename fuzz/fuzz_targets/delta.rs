//! Signature and delta handling (`engine::delta`), both directions of
//! distrust:
//!
//! - mode 0, a hostile signature reaching the sender: `parse_signature`,
//!   then `diff_file` of some data against it. Asserts every piece is
//!   bounded (`PIECE_BYTES`, `PIECE_OUT`), pieces add up to the data's
//!   length, literal + matched = length, and the hash is the data's.
//! - mode 1, a hostile piece reaching the receiver: `Base::apply` against
//!   a small old copy. Asserts an accepted piece wrote exactly what it
//!   announced, and that fast_rsync's own applier (which ours replaces)
//!   accepts it too and writes the same bytes.
//! - mode 2, honest peers: signature of an old copy, diff of new data,
//!   pieces applied to the old copy rebuild the new data exactly.
//!
//! Input: mode byte, a 2-byte length splitting the rest into two parts
//! (signature or base, then data or piece); mode 1 takes its announced
//! output length from 4 more bytes.
#![no_main]

use fts::engine::delta::{
    diff_file, parse_signature, signature, Base, Piece, PIECE_BYTES, PIECE_OUT,
};
use libfuzzer_sys::fuzz_target;
use std::fs::File;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static tempfile::TempDir {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().unwrap())
}

/// A file holding `data`, opened for reading.
fn file(name: &str, data: &[u8]) -> File {
    let p: PathBuf = dir().path().join(name);
    std::fs::write(&p, data).unwrap();
    File::open(&p).unwrap()
}

fn hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// Diffs `new` against `sig`; checks the bounds; returns the pieces.
fn diff(new: &[u8], sig: &fast_rsync::Signature) -> Option<Vec<Piece>> {
    let mut f = file("new", new);
    let mut pieces = Vec::new();
    let (hash, stats) = diff_file(&mut f, new.len() as u64, sig, |p| {
        pieces.push(p);
        Ok(())
    })
    .ok()?;
    assert_eq!(hash, hex(new));
    assert_eq!(stats.literal + stats.matched, new.len() as u64);
    let mut total = 0u64;
    for p in &pieces {
        assert!(
            p.delta.len() <= PIECE_BYTES,
            "piece of {} bytes",
            p.delta.len()
        );
        assert!(p.out_len <= PIECE_OUT);
        total += p.out_len;
    }
    assert_eq!(total, new.len() as u64, "pieces do not add up");
    Some(pieces)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((cut, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let cut = (u16::from_le_bytes(*cut) as usize).min(rest.len());
    let (a, b) = rest.split_at(cut);
    match mode % 3 {
        0 => {
            let Ok(sig) = parse_signature(a.to_vec()) else {
                return;
            };
            diff(b, &sig);
        }
        1 => {
            let Some((announced, piece)) = b.split_first_chunk::<4>() else {
                return;
            };
            let announced = u32::from_le_bytes(*announced) as u64 >> (announced[0] % 32);
            let mut base = Base::new(file("base", a)).unwrap();
            let mut out = Vec::new();
            if base.apply(piece, announced, &mut out).is_ok() {
                assert_eq!(out.len() as u64, announced, "wrote other than announced");
                let mut reference = Vec::new();
                fast_rsync::apply_limited(a, piece, &mut reference, announced as usize)
                    .expect("fast_rsync refuses a piece we accepted");
                assert!(reference == out, "fast_rsync rebuilds something else");
            }
        }
        _ => {
            let mut old = file("old", a);
            let sig = signature(&mut old, a.len() as u64).expect("signature of own file");
            let sig = parse_signature(sig).expect("own signature parses");
            let pieces = diff(b, &sig).expect("diff against an honest signature");
            let mut base = Base::new(old).unwrap();
            let mut out = Vec::new();
            for p in &pieces {
                base.apply(&p.delta, p.out_len, &mut out)
                    .expect("honest piece applies");
            }
            assert!(out == b, "rebuilt data differs");
        }
    }
});
