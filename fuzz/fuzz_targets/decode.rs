//! Fuzzes the wire decoder: any input must decode or fail without panicking, and whatever
//! decodes must re-encode to the same message and the same bytes (the encoding is
//! canonical), with `encoded_len` and `frame_len` agreeing.
//!
//! Run from the repository root: `cargo fuzz run -s none decode`.

#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use pastry_core::Address;
use pastry_core::codec::{self, HEADER_LEN, MAX_FRAME_LEN};

fn check<A: Address>(data: &[u8]) {
    let Ok(msg) = codec::decode::<A>(data) else {
        return;
    };
    let mut out = Vec::new();
    codec::encode(&msg, &mut out).expect("a decoded message is within the wire bounds");
    assert_eq!(out, data, "re-encoding changed the bytes");
    assert_eq!(
        codec::encoded_len(&msg),
        data.len(),
        "encoded_len disagrees"
    );
    assert_eq!(
        codec::decode::<A>(&out).as_ref(),
        Ok(&msg),
        "round trip changed the message"
    );
    assert_eq!(
        codec::frame_len(data),
        Ok(Some(data.len())),
        "frame_len disagrees"
    );
}

fuzz_target!(|data: &[u8]| {
    match codec::frame_len(data) {
        Ok(None) => assert!(data.len() < HEADER_LEN),
        Ok(Some(n)) => assert!((HEADER_LEN..=MAX_FRAME_LEN).contains(&n)),
        Err(_) => {
            assert!(codec::decode::<u32>(data).is_err());
        }
    }
    check::<u32>(data);
    check::<SocketAddr>(data);
});
