//! Per-chunk zstd. Every chunk is compressed on its own (so a receiver
//! never needs more than one chunk of state), and a chunk that does not
//! shrink by at least 1/16 turns compression off for the next
//! [`SKIP_AFTER_MISS`] times its size in input bytes, so random or
//! already-compressed data costs at most about 1/17 of a compression pass,
//! while a small incompressible piece does not stop a large compressible
//! one behind it from being compressed.

use crate::error::{Error, Result};

/// After a chunk of n bytes that did not compress, the next
/// `SKIP_AFTER_MISS × n` input bytes are sent raw without trying.
pub const SKIP_AFTER_MISS: u64 = 16;
/// The default `--compress-level`.
pub const DEFAULT_LEVEL: i32 = 3;
/// The most bytes one chunk may expand to; the wire format bounds its data
/// frames by it (`proto::MAX_DATA`).
pub const MAX_RAW: usize = 1 << 20;

pub struct Compressor {
    level: Option<i32>,
    skip: u64,
    /// Bytes saved so far (raw minus compressed, for chunks sent compressed).
    pub saved: u64,
}

thread_local! {
    /// One zstd context per thread and level, shared by the files it
    /// sends: making one costs more than sending a small file.
    static CONTEXT: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

impl Compressor {
    /// `None` disables compression.
    pub fn new(level: Option<i32>) -> Compressor {
        Compressor {
            level,
            skip: 0,
            saved: 0,
        }
    }

    /// The compressed form of `data`, if compressing was worth it.
    pub fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let level = self.level?;
        if data.len() < 256 {
            return None;
        }
        if self.skip > 0 {
            self.skip = self.skip.saturating_sub(data.len() as u64);
            return None;
        }
        let compressed = CONTEXT.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().is_none_or(|(l, _)| *l != level) {
                *c = zstd::bulk::Compressor::new(level).ok().map(|z| (level, z));
            }
            c.as_mut().map(|(_, z)| z.compress(data))
        })?;
        match compressed {
            Ok(c) if c.len() + 4 < data.len() - data.len() / 16 => {
                self.saved += (data.len() - c.len()) as u64;
                Some(c)
            }
            _ => {
                self.skip = SKIP_AFTER_MISS * data.len() as u64;
                None
            }
        }
    }
}

/// Decompresses one untrusted chunk that claims to expand to `raw_len`
/// bytes; never allocates more than [`MAX_RAW`].
pub fn decompress(bytes: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    if raw_len > MAX_RAW {
        return Err(Error::protocol(format!(
            "compressed chunk claims {raw_len} bytes"
        )));
    }
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let out = CONTEXT
        .with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = Some(zstd::bulk::Decompressor::new()?);
            }
            match c.as_mut() {
                Some(d) => d.decompress(bytes, raw_len),
                None => zstd::bulk::decompress(bytes, raw_len),
            }
        })
        .map_err(|e| Error::protocol(format!("bad compressed chunk: {e}")))?;
    if out.len() != raw_len {
        return Err(Error::protocol("compressed chunk has the wrong length"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_compresses_random_is_skipped() {
        let mut c = Compressor::new(Some(DEFAULT_LEVEL));
        let text = "2026-11-21 INFO request served in 3 ms\n".repeat(5000);
        let z = c.compress(text.as_bytes()).expect("text compresses");
        assert!(z.len() < text.len() / 10);
        assert_eq!(decompress(&z, text.len()).unwrap(), text.as_bytes());
        let mut x = 1u64;
        let random: Vec<u8> = (0..100_000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u8
            })
            .collect();
        assert!(c.compress(&random).is_none());
        // Skips the next 16 × 100,000 input bytes without trying.
        let mut skipped = 0;
        while c.compress(text.as_bytes()).is_none() {
            skipped += text.len() as u64;
            assert!(skipped <= SKIP_AFTER_MISS * 100_000 + text.len() as u64);
        }
        assert!(skipped >= SKIP_AFTER_MISS * 100_000 - text.len() as u64);
        assert!(Compressor::new(None).compress(text.as_bytes()).is_none());
    }

    #[test]
    fn hostile_chunks_are_refused() {
        let z = zstd::bulk::compress(&vec![0u8; 100_000], 3).unwrap();
        assert!(decompress(&z, 10).is_err(), "expands beyond the claim");
        assert!(decompress(&z, 200_000).is_err(), "shorter than the claim");
        assert!(decompress(&z, MAX_RAW + 1).is_err());
        assert!(decompress(b"not zstd", 10).is_err());
    }
}
