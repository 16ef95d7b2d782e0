//! Times the phases of a delta transfer on local files:
//! `cargo run --release --example delta_phases OLD NEW`.
//!
//! "diff+hash" is the sender's whole pass: its own signature of each
//! window compared with the base's at the same offset, the rolling search
//! over the differing runs only, and the BLAKE3 of what was read.
use std::fs::File;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (old, new) = (&args[1], &args[2]);
    let t = Instant::now();
    let mut of = File::open(old).unwrap();
    let len = of.metadata().unwrap().len();
    let sig = fts::engine::delta::signature(&mut of, len).unwrap();
    println!(
        "signature: {:.2}s ({} bytes)",
        t.elapsed().as_secs_f64(),
        sig.len()
    );
    let sig = fts::engine::delta::parse_signature(sig).unwrap();
    let t = Instant::now();
    let mut nf = File::open(new).unwrap();
    let nlen = nf.metadata().unwrap().len();
    let mut pieces = Vec::new();
    let (_h, st) = fts::engine::delta::diff_file(&mut nf, nlen, &sig, |p| {
        pieces.push(p);
        Ok(())
    })
    .unwrap();
    println!(
        "diff+hash (same-offset compare, search, BLAKE3): {:.2}s ({} pieces, {:?})",
        t.elapsed().as_secs_f64(),
        pieces.len(),
        st
    );
    let t = Instant::now();
    let mut base = fts::engine::delta::Base::new(File::open(old).unwrap()).unwrap();
    let mut out = std::io::BufWriter::new(File::create("/tmp/rebuilt.bin").unwrap());
    for p in &pieces {
        base.apply(&p.delta, p.out_len, &mut out).unwrap();
    }
    println!("apply: {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut f = File::open(new).unwrap();
    fts::engine::partial::hash_prefix(&mut f, nlen).unwrap();
    println!("blake3: {:.2}s", t.elapsed().as_secs_f64());

    // The block delta (what an upload uses first).
    let t = Instant::now();
    let bsig = fts::engine::blocks::signature(&mut File::open(old).unwrap(), len).unwrap();
    println!(
        "block signature: {:.2}s ({} bytes)",
        t.elapsed().as_secs_f64(),
        bsig.len()
    );
    let bsig = fts::engine::blocks::parse(bsig).unwrap();
    let t = Instant::now();
    let plan = fts::engine::blocks::plan(&mut File::open(new).unwrap(), nlen, &bsig).unwrap();
    println!(
        "block plan (BLAKE3 per block, compare, whole-file hash): {:.2}s ({:?}, search needed: {})",
        t.elapsed().as_secs_f64(),
        plan.stats,
        plan.needs_search
    );
}
