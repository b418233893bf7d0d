//! Replays inputs for the `decode` fuzz target (`fuzz/fuzz_targets/decode.rs`) through the
//! same checks, so that anything the fuzzer once found stays fixed.
//!
//! Crash inputs found by `cargo fuzz run -s none decode` go, as raw files, in
//! `tests/fuzz-inputs/`; every file there is replayed. A few hand-written edge cases are
//! replayed too.

use std::net::SocketAddr;
use std::path::Path;

use pastry_core::Address;
use pastry_core::codec::{self, HEADER_LEN, MAX_FRAME_LEN};

/// The fuzz target's checks: no panic; whatever decodes re-encodes to the same bytes, with
/// `encoded_len` and `frame_len` agreeing.
fn check(data: &[u8]) {
    match codec::frame_len(data) {
        Ok(None) => assert!(data.len() < HEADER_LEN),
        Ok(Some(n)) => assert!((HEADER_LEN..=MAX_FRAME_LEN).contains(&n)),
        Err(_) => assert!(codec::decode::<u32>(data).is_err()),
    }
    check_as::<u32>(data);
    check_as::<SocketAddr>(data);
}

fn check_as<A: Address>(data: &[u8]) {
    let Ok(msg) = codec::decode::<A>(data) else {
        return;
    };
    let mut out = Vec::new();
    codec::encode(&msg, &mut out).expect("a decoded message is within the wire bounds");
    assert_eq!(out, data, "re-encoding changed the bytes");
    assert_eq!(codec::encoded_len(&msg), data.len());
    assert_eq!(codec::decode::<A>(&out).as_ref(), Ok(&msg));
    assert_eq!(codec::frame_len(data), Ok(Some(data.len())));
}

#[test]
fn checked_in_inputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-inputs");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // no crash inputs checked in
    };
    for entry in entries {
        let path = entry.expect("readable directory").path();
        let data = std::fs::read(&path).expect("readable input");
        eprintln!("replaying {}", path.display());
        check(&data);
    }
}

#[test]
fn edge_cases() {
    let header = |ty: u8, len: u32| {
        let mut f = b"PY\x01".to_vec();
        f.push(ty);
        f.extend_from_slice(&len.to_be_bytes());
        f
    };
    let with_body = |ty: u8, body: &[u8]| {
        let mut f = header(ty, u32::try_from(body.len()).unwrap());
        f.extend_from_slice(body);
        f
    };
    let sender = [0u8; 16];
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        b"P".to_vec(),
        b"PY\x01".to_vec(),
        header(1, 0),
        header(1, u32::MAX),
        header(11, u32::try_from(MAX_FRAME_LEN - HEADER_LEN).unwrap()),
        // Leave with a list count far beyond the bytes present.
        with_body(11, &[&sender[..], &[0xff, 0xff]].concat()),
        // Direct whose data length is u32::MAX.
        with_body(3, &[&sender[..], &[0, 0, 0xff, 0xff, 0xff, 0xff]].concat()),
        // LeafSetUpdate with a bool of 2.
        with_body(7, &[&sender[..], &[2, 0, 0, 0, 0]].concat()),
        // Leave holding one handle with address family 6 but only 4 address bytes.
        with_body(
            11,
            &[&sender[..], &[0, 1], &[0; 16], &[6, 1, 2, 3, 4]].concat(),
        ),
        // An empty, well-formed Leave.
        with_body(11, &[&sender[..], &[0, 0]].concat()),
    ];
    for case in cases {
        check(&case);
    }
}
