//! Pure engine code: no network, only functions over files, buffers and
//! byte streams, unit-tested here and used by `transfer`.
//!
//! - [`delta`]: rsync signatures, windowed diff split into bounded pieces,
//!   and bounded application of untrusted pieces (fast_rsync underneath)
//! - [`blocks`]: the same-offset block delta (BLAKE3 per block), the fast
//!   path for files edited in place
//! - [`compress`]: per-chunk zstd with a sampling skip for data that does
//!   not compress
//! - [`partial`]: resumable partial files and their manifests
//! - [`io`]: the reading traits the engine works on (a file is one)
//! - [`hash`]: the whole-file BLAKE3 as state saved at part boundaries

pub mod blocks;
pub mod compress;
pub mod delta;
pub mod hash;
pub mod io;
pub mod partial;
