//! The whole-file BLAKE3 of a received file, as state that can be written
//! down at part boundaries and picked up again by another process.
//!
//! A plain [`blake3::Hasher`] cannot be saved, so a resumed upload whose
//! prefix cannot be read back (the parts of an S3 multipart upload are
//! write-only until it completes) could not be verified. BLAKE3 is a tree
//! hash: the file is cut into [`PART`]-sized subtrees whose chaining values
//! are kept (32 bytes each), and the root is merged from them at the end —
//! the same hash as `blake3::hash` of the whole, for any length.

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

/// Size of one saved subtree: a power of two (a BLAKE3 subtree boundary),
/// and also the part size of the S3 store's multipart uploads.
pub const PART: u64 = 8 << 20;

/// The running hash of a file's content.
#[derive(Clone)]
pub enum WholeHash {
    /// One hasher over everything (what a local prefix read back gives).
    Plain(Box<blake3::Hasher>),
    /// Chaining values of complete [`PART`]s, then the part being hashed.
    Parts(Box<Parts>),
}

#[derive(Clone)]
pub struct Parts {
    done: Vec<ChainingValue>,
    cur: blake3::Hasher,
    cur_len: u64,
}

impl Default for WholeHash {
    fn default() -> Self {
        WholeHash::Plain(Box::default())
    }
}

impl From<blake3::Hasher> for WholeHash {
    fn from(h: blake3::Hasher) -> Self {
        WholeHash::Plain(Box::new(h))
    }
}

fn hasher_at(offset: u64) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    if offset > 0 {
        h.set_input_offset(offset);
    }
    h
}

impl WholeHash {
    /// A hash that cuts at part boundaries (so [`WholeHash::saved`] has
    /// something to save), resumed after the parts whose chaining values
    /// are `done`.
    pub fn parts(done: Vec<ChainingValue>) -> WholeHash {
        let cur = hasher_at(done.len() as u64 * PART);
        WholeHash::Parts(Box::new(Parts {
            done,
            cur,
            cur_len: 0,
        }))
    }

    pub fn update(&mut self, mut data: &[u8]) {
        let p = match self {
            WholeHash::Plain(h) => {
                h.update(data);
                return;
            }
            WholeHash::Parts(p) => p,
        };
        while !data.is_empty() {
            // A full part is closed only when more comes: a file of one
            // part must be finalized as the root, not as a subtree.
            if p.cur_len == PART {
                p.done.push(p.cur.finalize_non_root());
                p.cur = hasher_at(p.done.len() as u64 * PART);
                p.cur_len = 0;
            }
            let take = ((PART - p.cur_len) as usize).min(data.len());
            p.cur.update(&data[..take]);
            p.cur_len += take as u64;
            data = &data[take..];
        }
    }

    /// Chaining values of the complete parts so far (a full last part
    /// counts once more data has come after it).
    pub fn saved(&self) -> &[ChainingValue] {
        match self {
            WholeHash::Plain(_) => &[],
            WholeHash::Parts(p) => &p.done,
        }
    }

    /// The hash of everything given so far.
    pub fn finalize(&self) -> blake3::Hash {
        match self {
            WholeHash::Plain(h) => h.finalize(),
            WholeHash::Parts(p) => {
                if p.done.is_empty() {
                    return p.cur.finalize();
                }
                if p.cur_len == 0 {
                    return prefix_hash(&p.done);
                }
                let mut cvs = p.done.clone();
                cvs.push(p.cur.finalize_non_root());
                root(&cvs, p.done.len() as u64 * PART + p.cur_len)
            }
        }
    }
}

/// The hash of a prefix made of whole parts, from their chaining values.
/// One part alone is not enough (its root hash is not derived from its
/// chaining value): callers keep that hash themselves, see
/// [`WholeHash::finalize`] for a single part.
pub fn prefix_hash(done: &[ChainingValue]) -> blake3::Hash {
    match done {
        // The empty input and a lone part cannot come from chaining values;
        // a hash no content has keeps a wrong caller from verifying.
        [] | [_] => blake3::Hash::from_bytes([0; 32]),
        _ => root(done, done.len() as u64 * PART),
    }
}

/// Root of `len` bytes cut into `cvs.len()` parts (all full but the last).
fn root(cvs: &[ChainingValue], len: u64) -> blake3::Hash {
    let left = left_subtree_len(len);
    let n = (left / PART) as usize;
    merge_subtrees_root(
        &subtree(&cvs[..n], left),
        &subtree(&cvs[n..], len - left),
        Mode::Hash,
    )
}

fn subtree(cvs: &[ChainingValue], len: u64) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let left = left_subtree_len(len);
    let n = (left / PART) as usize;
    merge_subtrees_non_root(
        &subtree(&cvs[..n], left),
        &subtree(&cvs[n..], len - left),
        Mode::Hash,
    )
}

/// Merges the chaining values of consecutive subtrees of one power-of-two
/// size (the last may be shorter), given in order, into the root hash,
/// holding O(log n) values: the same merging `blake3::Hasher` does with
/// its chunks, one level up. A value is merged only once the next one has
/// come, because the last subtree's parent is the root.
#[derive(Default)]
pub struct CvStack {
    stack: Vec<ChainingValue>,
    last: Option<ChainingValue>,
    merged: u64,
}

impl CvStack {
    pub fn push(&mut self, cv: ChainingValue) {
        let Some(mut cv) = self.last.replace(cv) else {
            return;
        };
        self.merged += 1;
        let mut total = self.merged;
        while total & 1 == 0 {
            let Some(left) = self.stack.pop() else { break };
            cv = merge_subtrees_non_root(&left, &cv, Mode::Hash);
            total >>= 1;
        }
        self.stack.push(cv);
    }

    /// The root, or `None` for fewer than two subtrees (a lone subtree's
    /// root hash does not follow from its chaining value).
    pub fn finish(mut self) -> Option<blake3::Hash> {
        let mut cv = self.last?;
        let first = if self.stack.is_empty() {
            return None;
        } else {
            self.stack.remove(0)
        };
        while let Some(left) = self.stack.pop() {
            cv = merge_subtrees_non_root(&left, &cv, Mode::Hash);
        }
        Some(merge_subtrees_root(&first, &cv, Mode::Hash))
    }
}

/// The chaining value of `data`, the subtree at `offset` of a file (a
/// multiple of a power of two at least as large as `data`).
pub fn subtree_cv(data: &[u8], offset: u64) -> ChainingValue {
    let mut h = hasher_at(offset);
    h.update(data);
    h.finalize_non_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn parts_hash_equals_plain_hash_at_every_shape() {
        let p = PART as usize;
        let all = data(5 * p + 3);
        for len in [
            0,
            1,
            1024,
            p - 1,
            p,
            p + 1,
            2 * p,
            2 * p + 7,
            3 * p,
            3 * p + 1,
            4 * p,
            5 * p + 3,
        ] {
            let want = blake3::hash(&all[..len]);
            // Odd-sized updates that straddle part boundaries.
            let mut h = WholeHash::parts(Vec::new());
            for c in all[..len].chunks(3 * 1024 * 1024 + 5) {
                h.update(c);
            }
            assert_eq!(h.finalize(), want, "length {len}");
        }
    }

    #[test]
    fn resumed_from_saved_parts_gives_the_whole_files_hash() {
        let p = PART as usize;
        let all = data(3 * p + 100);
        let mut first = WholeHash::parts(Vec::new());
        first.update(&all[..2 * p + 10]);
        let saved = first.saved().to_vec();
        assert_eq!(saved.len(), 2);
        assert_eq!(prefix_hash(&saved), blake3::hash(&all[..2 * p]));
        // Another process continues after the two saved parts.
        let mut again = WholeHash::parts(saved);
        again.update(&all[2 * p..]);
        assert_eq!(again.finalize(), blake3::hash(&all));
        // Resumed at the boundary with nothing after it.
        let at = WholeHash::parts(again.saved()[..2].to_vec());
        assert_eq!(at.finalize(), blake3::hash(&all[..2 * p]));
    }

    #[test]
    fn stacked_block_values_give_the_whole_files_hash() {
        let all = data(70 * 1024 + 5);
        for block in [1024usize, 4096] {
            for len in (block + 1..all.len())
                .step_by(997)
                .chain([2 * block, 8 * block, 9 * block])
            {
                let mut st = CvStack::default();
                for (i, b) in all[..len].chunks(block).enumerate() {
                    st.push(subtree_cv(b, (i * block) as u64));
                }
                assert_eq!(
                    st.finish(),
                    Some(blake3::hash(&all[..len])),
                    "{block} {len}"
                );
            }
            let mut lone = CvStack::default();
            lone.push(subtree_cv(&all[..block], 0));
            assert_eq!(lone.finish(), None);
        }
    }

    #[test]
    fn a_lone_part_never_verifies_from_its_chaining_value() {
        let one = data(PART as usize);
        let mut h = WholeHash::parts(Vec::new());
        h.update(&one);
        h.update(b"x");
        assert_ne!(prefix_hash(&h.saved()[..1]), blake3::hash(&one));
    }
}
