//! Arbitrary peer bytes into `proto::FrameReader`.
//!
//! Input: one config byte (read size, blob mode), then the stream.
//! Asserts:
//! - reading with any read size, and reading with every read cut off at a
//!   `Pending` and restarted (the reader's cancel-safety), give the same
//!   frames and the same final error;
//! - every decoded frame, written back with `FrameWriter`, reads back
//!   equal (control messages: JSON round trip);
//! - a chunk decodes to exactly the bytes it announces, within the limits;
//! - `read_blob(len)` returns exactly `len` bytes or an error.
#![no_main]

use fts::proto::{Chunk, Decoded, Frame, FrameReader, FrameWriter, Msg, MAX_CONTROL, MAX_DATA};
use fts_fuzz::{rt, step_for, Script, Sink};
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[derive(Debug, PartialEq)]
enum Out {
    Msg(Msg),
    Chunk(Chunk),
    End,
    Err(fts::ErrorKind, String),
}

fn out(r: fts::Result<Option<Frame>>) -> Out {
    match r {
        Ok(Some(Frame::Control(m))) => Out::Msg(m),
        Ok(Some(Frame::Chunk(c))) => Out::Chunk(c),
        Ok(None) => Out::End,
        Err(e) => Out::Err(e.kind, e.message),
    }
}

fn done(o: &Out) -> bool {
    matches!(o, Out::End | Out::Err(..))
}

async fn read_all(data: &[u8], step: usize) -> Vec<Out> {
    let mut r = FrameReader::new(Script::new(data, step, false), T);
    let mut v = Vec::new();
    loop {
        let o = out(r.read_opt().await);
        let stop = done(&o);
        v.push(o);
        if stop {
            return v;
        }
    }
}

/// Every read is polled once and dropped when pending, then restarted.
async fn read_all_cancelled(data: &[u8], step: usize) -> Vec<Out> {
    let mut r = FrameReader::new(Script::new(data, step, true), T);
    let mut v = Vec::new();
    loop {
        let Some(res) = r.read_opt().now_or_never() else {
            continue;
        };
        let o = out(res);
        let stop = done(&o);
        v.push(o);
        if stop {
            return v;
        }
    }
}

async fn reencode(o: &Out) {
    let sink = Sink::default();
    let mut w = FrameWriter::new(sink.clone(), T);
    match o {
        Out::Msg(m) => {
            let json = serde_json::to_vec(m).expect("a decoded Msg serializes");
            if json.len() > MAX_CONTROL {
                // Re-encoding may grow (escapes, number forms); the writer
                // refuses what the peer would refuse.
                assert!(w.msg(m).await.is_err());
                return;
            }
            w.msg(m).await.expect("write msg");
        }
        Out::Chunk(c) => w.chunk(c).await.expect("write chunk"),
        _ => return,
    }
    w.flush().await.expect("flush");
    let bytes = sink.bytes();
    let mut r = FrameReader::new(Script::new(&bytes, usize::MAX, false), T);
    let back = out(r.read_opt().await);
    assert_eq!(&back, o, "frame does not survive a write and a read");
    assert_eq!(out(r.read_opt().await), Out::End);
}

fn check_chunk(c: &Chunk) {
    assert!(c.payload_len() <= MAX_DATA + 16);
    match c.clone().decode() {
        Ok(Decoded::Data(d)) => {
            assert_eq!(d.len() as u64, c.out_len, "data chunk length");
            assert!(d.len() <= MAX_DATA);
        }
        Ok(Decoded::Piece { out_len, delta }) => {
            assert!(out_len <= fts::engine::delta::PIECE_OUT);
            assert!(delta.len() <= MAX_DATA + 16);
        }
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, stream)) = data.split_first() else {
        return;
    };
    let step = step_for(cfg);
    rt().block_on(async {
        if cfg & 8 != 0 {
            // read_blob: a signature arriving as chunks.
            let Some((len, rest)) = stream.split_first_chunk::<2>() else {
                return;
            };
            let len = u16::from_be_bytes(*len) as u64;
            let mut r = FrameReader::new(Script::new(rest, step, false), T);
            if let Ok(b) = r.read_blob(len, fts::engine::delta::MAX_SIGNATURE).await {
                assert_eq!(b.len() as u64, len, "blob of the wrong length");
            }
            return;
        }
        let plain = read_all(stream, step).await;
        let cut = read_all_cancelled(stream, step_for(cfg >> 4)).await;
        assert_eq!(plain, cut, "cancelled reads decode differently");
        for o in &plain {
            if let Out::Chunk(c) = o {
                check_chunk(c);
            }
            reencode(o).await;
        }
    });
});
