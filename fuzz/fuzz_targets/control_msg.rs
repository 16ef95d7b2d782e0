//! Arbitrary bytes as the JSON body of a control frame (`proto::Msg`),
//! the part of frame decoding with the most structure; a dictionary of
//! the message tags and field names helps (fuzz/dict/msg.dict).
//!
//! Asserts: a decoded message re-encodes, decodes to an equal message,
//! and encodes to the same bytes again (the encoding is stable).
#![no_main]

use fts::proto::Msg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = serde_json::from_slice::<Msg>(data) else {
        return;
    };
    let json = serde_json::to_vec(&m).expect("a decoded Msg serializes");
    let back: Msg = serde_json::from_slice(&json).expect("own encoding decodes");
    assert_eq!(back, m, "Msg does not round-trip");
    assert_eq!(
        serde_json::to_vec(&back).unwrap(),
        json,
        "encoding not stable"
    );
});
