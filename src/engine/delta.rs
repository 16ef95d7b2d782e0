//! Delta transfer on top of fast_rsync, with memory bounded for any file
//! size.
//!
//! - The receiver of a changed file computes a [signature] of its copy, one
//!   window at a time (a window is read into a buffer, never the whole file).
//! - The sender checks the untrusted signature ([`parse_signature`]) and
//!   diffs its file window by window ([`diff_file`]). fast_rsync's output is
//!   re-cut by a [`Splitter`] into self-contained [`Piece`]s: each is a
//!   valid delta (magic … END) of at most [`PIECE_BYTES`] that produces at
//!   most [`PIECE_OUT`] bytes, so neither side ever holds a whole delta.
//! - The receiver applies each piece against its old copy ([`Base`]),
//!   checking every command against the piece's announced output and the
//!   old copy's length, and reading copies with `pread` (no memory map).
//!
//! fast_rsync's strong hash is a truncated MD4: a rebuilt file is only
//! trusted after the whole-file BLAKE3 check done by the caller.

use super::io::{read_full, ReadAt};
use crate::error::{Error, Result};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Bytes of new data diffed at a time (a multiple of every block size).
pub const WINDOW: usize = 32 << 20;
/// Largest encoded piece (fits a data frame with room for its header).
pub const PIECE_BYTES: usize = 1000 * 1024;
/// Most output bytes one piece may produce.
pub const PIECE_OUT: u64 = 16 << 20;
/// Smallest and largest block sizes accepted from a peer.
pub const MIN_BLOCK: u32 = 256;
pub const MAX_BLOCK: u32 = 1 << 20;
/// Bytes of MD4 kept per block (plus a 4-byte rolling checksum).
pub const HASH_SIZE: u32 = 6;
/// Largest signature accepted from a peer: 6.4 M entries of a rolling
/// signature (6.4 TiB at 1 MiB blocks), 8 M of a block signature (just
/// under 8 TiB).
pub const MAX_SIGNATURE: u64 = 64 << 20;

const DELTA_MAGIC: [u8; 4] = 0x7273_0236u32.to_be_bytes();
const SIG_HEADER: usize = 12;
const OP_END: u8 = 0;
const OP_LITERAL_N1: u8 = 0x41;
const OP_COPY_N1_N1: u8 = 0x45;
const OP_COPY_N8_N8: u8 = 0x54;

/// Block size for a file of `len` bytes: about √len (as rsync), rounded up
/// to a power of two so windows stay aligned to blocks.
pub fn block_size_for(len: u64) -> u32 {
    let root = (len as f64).sqrt() as u64;
    root.next_power_of_two().clamp(1024, 128 * 1024) as u32
}

/// [`block_size_for`], doubled until a signature of `header` bytes plus
/// `entry` bytes per block fits [`MAX_SIGNATURE`] (files of a TiB and
/// more); `None` when no block size up to [`MAX_BLOCK`] does: no delta
/// for such a file.
pub fn fitting_block_size(len: u64, header: u64, entry: u64) -> Option<u32> {
    let mut block = block_size_for(len);
    while header + len.div_ceil(block as u64) * entry > MAX_SIGNATURE {
        if block >= MAX_BLOCK {
            return None;
        }
        block *= 2;
    }
    Some(block)
}

fn too_large() -> Error {
    Error::other("file too large for a delta signature")
}

/// Reads up to `buf.len()` bytes, fewer only at end of file.
/// The serialized signature of `file`'s first `len` bytes, built one
/// window at a time: the blocks of consecutive windows concatenate because
/// windows are multiples of the block size.
pub fn signature(file: &mut (impl Read + Seek), len: u64) -> Result<Vec<u8>> {
    let block =
        fitting_block_size(len, SIG_HEADER as u64, 4 + HASH_SIZE as u64).ok_or_else(too_large)?;
    let opts = fast_rsync::SignatureOptions {
        block_size: block,
        crypto_hash_size: HASH_SIZE,
    };
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut buf = vec![0u8; (len as usize).min(WINDOW)];
    let mut out: Vec<u8> = Vec::new();
    let mut left = len;
    loop {
        let want = left.min(WINDOW as u64) as usize;
        let got = read_full(file, &mut buf[..want]).map_err(io_err)?;
        if got < want {
            return Err(Error::other("file shrank while its signature was computed"));
        }
        // Both cores: the two halves of a window (cut at a block boundary)
        // are signed at once; their entries concatenate like windows do.
        let data = &buf[..got];
        let half = (got / 2)
            .next_multiple_of(opts.block_size as usize)
            .min(got);
        let (a, b) = data.split_at(half);
        let (sa, sb) = std::thread::scope(|scope| {
            let sb = scope.spawn(|| fast_rsync::Signature::calculate(b, opts));
            let sa = fast_rsync::Signature::calculate(a, opts);
            (sa, sb.join())
        });
        let sb = sb.map_err(|_| Error::other("signature thread panicked"))?;
        for (k, sig) in [sa, sb].iter().enumerate() {
            let bytes = sig.serialized();
            if out.is_empty() && k == 0 {
                out.extend_from_slice(bytes);
            } else {
                out.extend_from_slice(&bytes[SIG_HEADER..]);
            }
        }
        left -= got as u64;
        if left == 0 {
            return Ok(out);
        }
    }
}

/// Checks a peer's signature before fast_rsync sees it (a zero block size
/// panics in fast_rsync 0.2; a huge hash size is nonsense).
pub fn parse_signature(bytes: Vec<u8>) -> Result<fast_rsync::Signature> {
    if bytes.len() < SIG_HEADER {
        return Err(Error::protocol("signature too short"));
    }
    let block = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let hash = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(MIN_BLOCK..=MAX_BLOCK).contains(&block) {
        return Err(Error::protocol(format!(
            "signature block size {block} out of range"
        )));
    }
    if !(4..=16).contains(&hash) {
        return Err(Error::protocol(format!(
            "signature hash size {hash} out of range"
        )));
    }
    fast_rsync::Signature::deserialize(bytes)
        .map_err(|e| Error::protocol(format!("bad signature: {e}")))
}

/// One self-contained delta piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Bytes the piece produces when applied.
    pub out_len: u64,
    /// A complete fast_rsync delta (magic, commands, END).
    pub delta: Vec<u8>,
}

/// What a delta saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeltaStats {
    pub literal: u64,
    pub matched: u64,
}

fn size_class(v: u64) -> u8 {
    match v {
        0..=0xff => 0,
        0x100..=0xffff => 1,
        0x1_0000..=0xffff_ffff => 2,
        _ => 3,
    }
}

fn put_varint(out: &mut Vec<u8>, v: u64, class: u8) {
    let b = v.to_be_bytes();
    out.extend_from_slice(&b[8 - (1usize << class)..]);
}

fn put_literal(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len() as u64;
    if n <= 64 {
        out.push(n as u8);
    } else {
        let c = size_class(n);
        out.push(OP_LITERAL_N1 + c);
        put_varint(out, n, c);
    }
    out.extend_from_slice(data);
}

fn put_copy(out: &mut Vec<u8>, offset: u64, len: u64) {
    let (oc, lc) = (size_class(offset), size_class(len));
    out.push(OP_COPY_N1_N1 + oc * 4 + lc);
    put_varint(out, offset, oc);
    put_varint(out, len, lc);
}

enum St {
    Magic(usize),
    Cmd,
    LitLen {
        need: usize,
        acc: u64,
    },
    Lit(u64),
    CopyOff {
        oneed: usize,
        lneed: usize,
        acc: u64,
    },
    CopyLen {
        offset: u64,
        need: usize,
        acc: u64,
    },
}

/// Re-cuts a stream of fast_rsync deltas (one per window, concatenated)
/// into bounded, self-contained [`Piece`]s as it is written.
pub struct Splitter<F: FnMut(Piece) -> io::Result<()>> {
    emit: F,
    st: St,
    cur: Vec<u8>,
    cur_out: u64,
    pub stats: DeltaStats,
}

impl<F: FnMut(Piece) -> io::Result<()>> Splitter<F> {
    pub fn new(emit: F) -> Self {
        Splitter {
            emit,
            st: St::Magic(0),
            cur: Vec::new(),
            cur_out: 0,
            stats: DeltaStats::default(),
        }
    }

    fn flush_piece(&mut self) -> io::Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let mut delta = Vec::with_capacity(self.cur.len() + 5);
        delta.extend_from_slice(&DELTA_MAGIC);
        delta.append(&mut self.cur);
        delta.push(OP_END);
        let out_len = std::mem::take(&mut self.cur_out);
        (self.emit)(Piece { out_len, delta })
    }

    /// Makes room for a command of `bytes` encoded bytes producing `out`.
    fn room(&mut self, bytes: usize, out: u64) -> io::Result<()> {
        if self.cur.len() + bytes + 5 > PIECE_BYTES || self.cur_out + out > PIECE_OUT {
            self.flush_piece()?;
        }
        Ok(())
    }

    /// Adds a copy of `len` bytes at `offset` of the old copy.
    pub(crate) fn copy(&mut self, mut offset: u64, mut len: u64) -> io::Result<()> {
        self.stats.matched += len;
        while len > 0 {
            self.room(17, 1)?;
            let take = len.min(PIECE_OUT - self.cur_out);
            put_copy(&mut self.cur, offset, take);
            self.cur_out += take;
            offset += take;
            len -= take;
        }
        Ok(())
    }

    /// Adds as much of `data` as a literal as fits the current piece;
    /// returns how much that was (call again with the rest).
    pub(crate) fn literal(&mut self, data: &[u8]) -> io::Result<usize> {
        self.room(64, 1)?;
        let space = (PIECE_BYTES - self.cur.len() - 5 - 9) as u64;
        let take = (data.len() as u64).min(space).min(PIECE_OUT - self.cur_out) as usize;
        put_literal(&mut self.cur, &data[..take]);
        self.cur_out += take as u64;
        self.stats.literal += take as u64;
        Ok(take)
    }

    /// Emits the last piece; the stream must end between deltas.
    pub fn finish(mut self) -> io::Result<DeltaStats> {
        if !matches!(self.st, St::Magic(0)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated delta stream",
            ));
        }
        self.flush_piece()?;
        Ok(self.stats)
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed delta: {what}"),
    )
}

impl<F: FnMut(Piece) -> io::Result<()>> Write for Splitter<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut i = 0;
        while i < buf.len() {
            match self.st {
                St::Magic(got) => {
                    if buf[i] != DELTA_MAGIC[got] {
                        return Err(bad("magic"));
                    }
                    i += 1;
                    self.st = if got == 3 {
                        St::Cmd
                    } else {
                        St::Magic(got + 1)
                    };
                }
                St::Cmd => {
                    let c = buf[i];
                    i += 1;
                    self.st = match c {
                        OP_END => St::Magic(0),
                        1..=64 => St::Lit(c as u64),
                        OP_LITERAL_N1..=0x44 => St::LitLen {
                            need: 1 << (c - OP_LITERAL_N1),
                            acc: 0,
                        },
                        OP_COPY_N1_N1..=OP_COPY_N8_N8 => {
                            let m = c - OP_COPY_N1_N1;
                            St::CopyOff {
                                oneed: 1 << (m / 4),
                                lneed: 1 << (m % 4),
                                acc: 0,
                            }
                        }
                        _ => return Err(bad("unknown command")),
                    };
                }
                St::LitLen { need, acc } => {
                    let acc = (acc << 8) | buf[i] as u64;
                    i += 1;
                    self.st = if need == 1 {
                        St::Lit(acc)
                    } else {
                        St::LitLen {
                            need: need - 1,
                            acc,
                        }
                    };
                }
                St::Lit(rem) => {
                    let avail = ((buf.len() - i) as u64).min(rem) as usize;
                    let took = self.literal(&buf[i..i + avail])?;
                    i += took;
                    let rem = rem - took as u64;
                    self.st = if rem == 0 { St::Cmd } else { St::Lit(rem) };
                }
                St::CopyOff { oneed, lneed, acc } => {
                    let acc = (acc << 8) | buf[i] as u64;
                    i += 1;
                    self.st = if oneed == 1 {
                        St::CopyLen {
                            offset: acc,
                            need: lneed,
                            acc: 0,
                        }
                    } else {
                        St::CopyOff {
                            oneed: oneed - 1,
                            lneed,
                            acc,
                        }
                    };
                }
                St::CopyLen { offset, need, acc } => {
                    let acc = (acc << 8) | buf[i] as u64;
                    i += 1;
                    if need == 1 {
                        self.st = St::Cmd;
                        self.copy(offset, acc)?;
                    } else {
                        self.st = St::CopyLen {
                            offset,
                            need: need - 1,
                            acc,
                        };
                    }
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Diffs the first `len` bytes of `file` against `sig`, one window at a
/// time, handing out pieces as they are ready. Returns the BLAKE3 of the
/// data that was diffed and what the delta saved.
///
/// Same-offset blocks are compared first: the sender computes its own
/// signature of each window (SIMD MD4, much cheaper than the rolling
/// search) and a block whose entry equals the base's entry at the same
/// offset becomes a copy at once. fast_rsync's rolling search runs only
/// over the runs of blocks that differ, widened by one block on each side
/// so that data which moved a little is still found; its copies may refer
/// to anywhere in the base. A false match (a collision of the truncated
/// MD4 and the rolling sum) is caught by the caller's whole-file BLAKE3,
/// like any other.
pub fn diff_file(
    file: &mut (impl Read + Seek),
    len: u64,
    sig: &fast_rsync::Signature,
    emit: impl FnMut(Piece) -> io::Result<()>,
) -> Result<(String, DeltaStats)> {
    let index = sig.index();
    let same = SameOffset::new(sig);
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut buf = vec![0u8; (len as usize).min(WINDOW)];
    let mut hasher = blake3::Hasher::new();
    let mut split = Splitter::new(emit);
    let mut left = len;
    let mut at = 0u64;
    while left > 0 {
        let want = left.min(WINDOW as u64) as usize;
        let got = read_full(file, &mut buf[..want]).map_err(io_err)?;
        if got < want {
            return Err(Error::other("file shrank while it was being sent"));
        }
        let data = &buf[..got];
        // The BLAKE3 of the window runs on the other core while this one
        // signs and searches it.
        std::thread::scope(|scope| -> Result<()> {
            scope.spawn(|| {
                hasher.update(data);
            });
            diff_window(&index, &same, &mut split, data, at)
        })?;
        at += got as u64;
        left -= got as u64;
    }
    let stats = split.finish().map_err(io_err)?;
    Ok((hasher.finalize().to_hex().to_string(), stats))
}

/// Diffs one window starting at `at`: same-offset copies first, the
/// rolling search over the rest.
fn diff_window<F: FnMut(Piece) -> io::Result<()>>(
    index: &fast_rsync::IndexedSignature<'_>,
    same: &SameOffset<'_>,
    split: &mut Splitter<F>,
    data: &[u8],
    at: u64,
) -> Result<()> {
    for run in same.runs(data, at) {
        match run {
            Run::Copy { offset, len } => split.copy(offset, len).map_err(io_err)?,
            Run::Search(range) => {
                fast_rsync::diff(index, &data[range], &mut *split).map_err(|e| match e {
                    fast_rsync::DiffError::Io(e) => io_err(e),
                    e => Error::protocol(format!("diff failed: {e}")),
                })?
            }
        }
    }
    Ok(())
}

/// A stretch of one window: either blocks equal to the base's at the same
/// offset, or bytes for the rolling search.
#[derive(Debug, PartialEq, Eq)]
enum Run {
    Copy { offset: u64, len: u64 },
    Search(std::ops::Range<usize>),
}

/// The base's block entries, for comparing blocks at the same offset.
struct SameOffset<'a> {
    /// The base signature's entries (rolling sum + truncated MD4 each).
    entries: &'a [u8],
    block: usize,
    hash: u32,
    entry: usize,
    /// Blocks of the base known to be whole: all but the last, whose
    /// length the signature does not tell.
    whole: u64,
}

impl<'a> SameOffset<'a> {
    fn new(sig: &'a fast_rsync::Signature) -> Self {
        // parse_signature checked the header and that entries are whole.
        let bytes = sig.serialized();
        let block = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let hash = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let entry = 4 + hash as usize;
        let entries = &bytes[SIG_HEADER..];
        let count = (entries.len() / entry) as u64;
        SameOffset {
            entries,
            block,
            hash,
            entry,
            whole: count.saturating_sub(1),
        }
    }

    /// Splits `data` (the window starting at `at`, a multiple of the block
    /// size) into copies of same-offset blocks and stretches to search.
    fn runs(&self, data: &[u8], at: u64) -> Vec<Run> {
        let block = self.block;
        let first = at / block as u64;
        let full = data.len() / block;
        // Only whole blocks of both sides can match at the same offset.
        let cmp = (full as u64).min(self.whole.saturating_sub(first)) as usize;
        let mut same = vec![false; data.len().div_ceil(block)];
        if cmp > 0 {
            let own = fast_rsync::Signature::calculate(
                &data[..cmp * block],
                fast_rsync::SignatureOptions {
                    block_size: block as u32,
                    crypto_hash_size: self.hash,
                },
            );
            let own = &own.serialized()[SIG_HEADER..];
            let base = &self.entries[first as usize * self.entry..];
            for (j, s) in same.iter_mut().enumerate().take(cmp) {
                let e = j * self.entry..(j + 1) * self.entry;
                *s = own[e.clone()] == base[e];
            }
        }
        // A block is copied only when its neighbours match too: the
        // searched stretch keeps a one-block margin around what differs.
        let n = same.len();
        let copy: Vec<bool> = (0..n)
            .map(|j| same[j] && (j == 0 || same[j - 1]) && (j + 1 == n || same[j + 1]))
            .collect();
        let mut runs = Vec::new();
        let mut j = 0;
        while j < n {
            let k = (j..n).find(|&k| copy[k] != copy[j]).unwrap_or(n);
            let (s, e) = (j * block, (k * block).min(data.len()));
            runs.push(if copy[j] {
                Run::Copy {
                    offset: at + s as u64,
                    len: (e - s) as u64,
                }
            } else {
                Run::Search(s..e)
            });
            j = k;
        }
        runs
    }
}

pub(crate) fn io_err(e: io::Error) -> Error {
    Error::other(e.to_string())
}

/// Copies from the old copy at least this long are offered to
/// [`Rebuild::copy_range`]; shorter ones are not worth flushing the output
/// buffer for.
const KERNEL_COPY_MIN: u64 = 64 * 1024;

/// Where a rebuild writes: literal bytes through `Write`, and ranges of the
/// old copy through [`Rebuild::copy_range`] when the output can have the
/// kernel copy them (see [`crate::engine::io::copy_range`]).
pub trait Rebuild: Write {
    /// Appends up to `n` bytes at `offset` of `base` to the output without
    /// reading them here; returns how many it appended (0: it cannot, and
    /// the caller copies them through a buffer).
    fn copy_range(&mut self, _base: &std::fs::File, _offset: u64, _n: u64) -> io::Result<u64> {
        Ok(0)
    }
}

impl Rebuild for Vec<u8> {}
impl<W: Write> Rebuild for io::BufWriter<W> {}

/// The receiver's old copy, which delta pieces copy from.
///
/// Pieces are interpreted here rather than by `fast_rsync::apply`, which
/// needs the whole base as one slice: mapping a large base and faulting its
/// pages in one by one is what made applying slow, and the mapped pages
/// count against the receiver's memory. Copies are read with `pread` into
/// one reused buffer instead. Every command is checked against the piece's
/// announced output and the base's length before anything is read or
/// written, so a hostile piece is refused, never followed.
pub struct Base {
    src: Box<dyn ReadAt>,
    len: u64,
    buf: Vec<u8>,
}

impl Base {
    pub fn new(src: impl ReadAt) -> Result<Base> {
        Self::boxed(Box::new(src))
    }

    pub fn boxed(src: Box<dyn ReadAt>) -> Result<Base> {
        let len = src.size().map_err(io_err)?;
        Ok(Base {
            src,
            len,
            buf: Vec::new(),
        })
    }

    /// Applies one untrusted piece, writing exactly `piece_out` bytes to `out`.
    pub fn apply(&mut self, delta: &[u8], piece_out: u64, out: &mut impl Rebuild) -> Result<()> {
        let bad = |what: &str| Error::protocol(format!("bad delta: {what}"));
        if piece_out > PIECE_OUT {
            return Err(Error::protocol(format!(
                "delta piece of {piece_out} bytes is too large"
            )));
        }
        let mut d = delta
            .strip_prefix(&DELTA_MAGIC[..])
            .ok_or_else(|| bad("wrong magic"))?;
        let mut left = piece_out;
        fn take<'a>(d: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if d.len() < n {
                return None;
            }
            let (head, rest) = d.split_at(n);
            *d = rest;
            Some(head)
        }
        fn varint(d: &mut &[u8], n: usize) -> Option<u64> {
            Some(
                take(d, n)?
                    .iter()
                    .fold(0u64, |acc, b| (acc << 8) | *b as u64),
            )
        }
        loop {
            let cmd = *take(&mut d, 1)
                .ok_or_else(|| bad("missing END"))?
                .first()
                .unwrap_or(&0);
            match cmd {
                OP_END => break,
                1..=0x44 => {
                    let n = if cmd <= 64 {
                        cmd as u64
                    } else {
                        varint(&mut d, 1 << (cmd - OP_LITERAL_N1))
                            .ok_or_else(|| bad("truncated literal length"))?
                    };
                    if n > left {
                        return Err(bad("literal runs past the announced output"));
                    }
                    let data = take(&mut d, n as usize).ok_or_else(|| bad("truncated literal"))?;
                    out.write_all(data).map_err(io_err)?;
                    left -= n;
                }
                OP_COPY_N1_N1..=OP_COPY_N8_N8 => {
                    let m = cmd - OP_COPY_N1_N1;
                    let offset =
                        varint(&mut d, 1 << (m / 4)).ok_or_else(|| bad("truncated copy"))?;
                    let n = varint(&mut d, 1 << (m % 4)).ok_or_else(|| bad("truncated copy"))?;
                    let end = offset
                        .checked_add(n)
                        .ok_or_else(|| bad("copy out of range"))?;
                    if n == 0 || end > self.len {
                        return Err(bad("copy out of range"));
                    }
                    if n > left {
                        return Err(bad("copy runs past the announced output"));
                    }
                    self.copy(offset, n, out)?;
                    left -= n;
                }
                _ => return Err(bad("unknown command")),
            }
        }
        if !d.is_empty() {
            return Err(bad("data after END"));
        }
        if left != 0 {
            return Err(Error::protocol(format!(
                "delta piece produced {} bytes, announced {piece_out}",
                piece_out - left
            )));
        }
        Ok(())
    }

    fn copy(&mut self, mut offset: u64, mut n: u64, out: &mut impl Rebuild) -> Result<()> {
        if n >= KERNEL_COPY_MIN {
            if let Some(f) = self.src.file() {
                let done = out
                    .copy_range(f, offset, n)
                    .map_err(|e| Error::other(format!("copying from the old copy: {e}")))?;
                offset += done;
                n -= done;
            }
        }
        if self.buf.is_empty() {
            self.buf = vec![0u8; 256 * 1024];
        }
        while n > 0 {
            let k = n.min(self.buf.len() as u64) as usize;
            self.src
                .read_exact_at(&mut self.buf[..k], offset)
                .map_err(|e| Error::other(format!("reading the old copy: {e}")))?;
            out.write_all(&self.buf[..k]).map_err(io_err)?;
            offset += k as u64;
            n -= k as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs::File;

    /// Deterministic incompressible bytes.
    pub(crate) fn rand_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn file_with(data: &[u8]) -> (tempfile::TempDir, File) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, data).unwrap();
        let f = std::fs::OpenOptions::new().read(true).open(&p).unwrap();
        (d, f)
    }

    /// Full round trip: signature of `old`, pieces from `new`, applied to `old`.
    fn roundtrip(old: &[u8], new: &[u8]) -> (DeltaStats, usize) {
        let (_d1, mut of) = file_with(old);
        let (_d2, mut nf) = file_with(new);
        let sig = parse_signature(signature(&mut of, old.len() as u64).unwrap()).unwrap();
        let mut pieces = Vec::new();
        let (hash, stats) = diff_file(&mut nf, new.len() as u64, &sig, |p| {
            assert!(p.delta.len() <= PIECE_BYTES);
            assert!(p.out_len <= PIECE_OUT);
            pieces.push(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(hash, blake3::hash(new).to_hex().to_string());
        let mut base = Base::new(of).unwrap();
        let mut out = Vec::new();
        let mut reference = Vec::new();
        for p in &pieces {
            base.apply(&p.delta, p.out_len, &mut out).unwrap();
            // Every piece is a valid fast_rsync delta, and both appliers agree.
            fast_rsync::apply_limited(old, &p.delta, &mut reference, p.out_len as usize).unwrap();
        }
        assert!(out == new, "rebuilt data differs");
        assert!(reference == new, "fast_rsync rebuilds something else");
        assert_eq!(stats.literal + stats.matched, new.len() as u64);
        (stats, pieces.iter().map(|p| p.delta.len()).sum())
    }

    #[test]
    fn small_edits_send_little() {
        let old = rand_bytes(3 << 20, 1);
        let mut new = old.clone();
        for pos in [1000, 1_500_000, 3_000_000] {
            new[pos..pos + 10].copy_from_slice(b"0123456789");
        }
        let (stats, wire) = roundtrip(&old, &new);
        assert!(stats.literal <= 3 * 2 * block_size_for(old.len() as u64) as u64);
        assert!(wire < 20_000, "delta is {wire} bytes");
    }

    #[test]
    fn insert_truncate_append_and_empty() {
        let old = rand_bytes(1 << 20, 2);
        let mut ins = old[..500_000].to_vec();
        ins.extend_from_slice(b"inserted bytes in the middle");
        ins.extend_from_slice(&old[500_000..]);
        assert!(roundtrip(&old, &ins).1 < 10_000);
        assert!(roundtrip(&old, &old[..700_001]).1 < 5_000);
        let mut app = old.clone();
        app.extend_from_slice(&rand_bytes(5000, 3));
        assert!(roundtrip(&old, &app).1 < 10_000);
        roundtrip(&old, b"");
        roundtrip(b"", &old[..3000]);
        roundtrip(&old, &rand_bytes(2 << 20, 4)); // nothing in common
    }

    #[test]
    fn same_offset_matching_survives_an_insertion_that_shifts_everything() {
        // 40 MiB: more than one window, so shifted data crosses windows.
        let old = rand_bytes(40 << 20, 11);
        let mut new = old[..1000].to_vec();
        new.extend_from_slice(b"seven b");
        new.extend_from_slice(&old[1000..]);
        let (stats, wire) = roundtrip(&old, &new);
        let block = block_size_for(old.len() as u64) as u64;
        assert!(stats.literal <= 4 * block, "literal {}", stats.literal);
        assert!(wire < 100_000, "delta is {wire} bytes");
    }

    #[test]
    fn signature_signed_in_halves_equals_one_pass() {
        // Odd sizes: a partial last block, a window smaller than two blocks.
        for n in [0, 100, 5000, (3 << 20) + 777] {
            let data = rand_bytes(n, 13);
            let (_d, mut f) = file_with(&data);
            let opts = fast_rsync::SignatureOptions {
                block_size: block_size_for(n as u64),
                crypto_hash_size: HASH_SIZE,
            };
            let whole = fast_rsync::Signature::calculate(&data, opts);
            assert_eq!(signature(&mut f, n as u64).unwrap(), whole.serialized());
        }
    }

    #[test]
    fn same_offset_runs_keep_a_margin_around_what_differs() {
        let old = rand_bytes(64 * 1024, 12);
        let (_d, mut of) = file_with(&old);
        let sig = parse_signature(signature(&mut of, old.len() as u64).unwrap()).unwrap();
        let same = SameOffset::new(&sig);
        assert_eq!(same.block, 1024);
        let mut new = old.clone();
        new[10 * 1024 + 5] ^= 1; // block 10 differs
        let runs = same.runs(&new, 0);
        assert_eq!(
            runs,
            vec![
                Run::Copy {
                    offset: 0,
                    len: 9 * 1024
                },
                Run::Search(9 * 1024..12 * 1024),
                Run::Copy {
                    offset: 12 * 1024,
                    len: 50 * 1024
                },
                // The base's last block is never matched blind (its length
                // is unknown), so it and its margin are searched.
                Run::Search(62 * 1024..64 * 1024),
            ]
        );
        // A window further into the file compares against the base's
        // blocks at that offset.
        let runs = same.runs(&new[32 * 1024..40 * 1024], 32 * 1024);
        assert_eq!(
            runs,
            vec![Run::Copy {
                offset: 32 * 1024,
                len: 8 * 1024
            }]
        );
    }

    #[test]
    fn pieces_are_bounded_for_big_literals_and_copies() {
        // A long literal run and a long copy run both get cut.
        let old = rand_bytes(40 << 20, 5);
        let mut new = rand_bytes(3 << 20, 6);
        new.extend_from_slice(&old);
        let (stats, _) = roundtrip(&old, &new);
        assert_eq!(stats.matched, old.len() as u64);
    }

    #[test]
    fn hostile_signatures_are_refused() {
        let mut sig = 0x7273_0136u32.to_be_bytes().to_vec();
        sig.extend_from_slice(&0u32.to_be_bytes()); // block size 0
        sig.extend_from_slice(&8u32.to_be_bytes());
        assert!(parse_signature(sig.clone()).is_err());
        sig[4..8].copy_from_slice(&4096u32.to_be_bytes());
        sig[8..12].copy_from_slice(&99u32.to_be_bytes()); // hash size 99
        assert!(parse_signature(sig.clone()).is_err());
        sig[8..12].copy_from_slice(&8u32.to_be_bytes());
        sig.push(1); // not a whole block entry
        assert!(parse_signature(sig).is_err());
        assert!(parse_signature(vec![1, 2, 3]).is_err());
    }

    #[test]
    fn hostile_pieces_are_refused() {
        let (_d, f) = file_with(&rand_bytes(1000, 7));
        let mut base = Base::new(f).unwrap();
        let mut out = Vec::new();
        let mut copy_oob = DELTA_MAGIC.to_vec();
        put_copy(&mut copy_oob, 900, 200);
        copy_oob.push(OP_END);
        assert!(base.apply(&copy_oob, 200, &mut out).is_err());
        let mut lit = DELTA_MAGIC.to_vec();
        put_literal(&mut lit, b"abc");
        lit.push(OP_END);
        assert!(
            base.apply(&lit, 2, &mut out).is_err(),
            "more output than announced"
        );
        assert!(
            base.apply(&lit, 4, &mut out).is_err(),
            "less output than announced"
        );
        assert!(base.apply(b"garbage", 1, &mut out).is_err());
        let mut trailing = lit.clone();
        trailing.push(1);
        assert!(
            base.apply(&trailing, 3, &mut out).is_err(),
            "data after END"
        );
        assert!(base.apply(&DELTA_MAGIC, 0, &mut out).is_err(), "no END");
        let mut zero_copy = DELTA_MAGIC.to_vec();
        put_copy(&mut zero_copy, 0, 0);
        zero_copy.push(OP_END);
        assert!(base.apply(&zero_copy, 0, &mut out).is_err());
        let mut huge = DELTA_MAGIC.to_vec();
        huge.extend_from_slice(&[OP_COPY_N8_N8]);
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&2u64.to_be_bytes());
        huge.push(OP_END);
        assert!(base.apply(&huge, 2, &mut out).is_err(), "offset overflow");
        assert!(base.apply(&lit, PIECE_OUT + 1, &mut out).is_err());
        let mut ok = Vec::new();
        base.apply(&lit, 3, &mut ok).unwrap();
        assert_eq!(ok, b"abc");
    }

    #[test]
    fn splitter_rejects_malformed_streams() {
        let mut s = Splitter::new(|_| Ok(()));
        assert!(s.write(b"nope").is_err());
        let mut s = Splitter::new(|_| Ok(()));
        s.write_all(&DELTA_MAGIC).unwrap();
        s.write_all(&[0x41]).unwrap(); // literal with a length byte still to come
        assert!(s.finish().is_err());
    }

    #[test]
    fn block_sizes() {
        assert_eq!(block_size_for(0), 1024);
        assert_eq!(block_size_for(64 << 20), 8192);
        assert_eq!(block_size_for(1 << 30), 32768);
        assert_eq!(block_size_for(u64::MAX / 2), 128 * 1024);
        assert_eq!(WINDOW % (128 * 1024), 0);
    }
}
