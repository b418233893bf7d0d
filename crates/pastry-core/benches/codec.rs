//! Measures the wire codec in ns per message (and bytes/s of frame): `codec::encode` into a
//! reused buffer, `codec::decode`, and `codec::encoded_len`, each for both address types
//! (`u32`, as in the simulator, and `SocketAddr`, IPv4 as on the network), on three
//! representative messages: a `Route` hop carrying a 1 KiB application payload, a
//! `RouteAck`, and a `LeafSetUpdate` heartbeat with a full 16-handle leaf set.

use std::net::SocketAddr;

use bytes::Bytes;
use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use pastry_core::codec;
use pastry_core::message::{RouteMsg, RoutePayload};
use pastry_core::{Address, Body, Message, NodeHandle, NodeId};

/// An address type the messages can be built with.
trait Sample: Address {
    fn sample(i: u32) -> Self;
}

impl Sample for u32 {
    fn sample(i: u32) -> Self {
        i
    }
}

impl Sample for SocketAddr {
    fn sample(i: u32) -> Self {
        let [_, _, hi, lo] = i.to_be_bytes();
        SocketAddr::from(([10, 0, hi, lo], 4000 + (i % 1000) as u16))
    }
}

/// An id with every byte set (no run of zeros for a codec to shortcut).
fn id(i: u32) -> NodeId {
    NodeId::from_u128(u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
}

fn handle<A: Sample>(i: u32) -> NodeHandle<A> {
    NodeHandle::new(id(i), A::sample(i))
}

/// One hop of a routed application message with a 1 KiB payload, untraced.
fn route_app_1k<A: Sample>() -> Message<A> {
    Message {
        sender: id(1),
        body: Body::Route(Box::new(RouteMsg {
            hop_id: 0x0123_4567_89ab_cdef,
            key: id(99),
            origin: handle(2),
            request: 42,
            hops: 3,
            trace: false,
            path: Vec::new(),
            payload: RoutePayload::App {
                app: 7,
                data: Bytes::from(vec![0xa5; 1024]),
            },
        })),
    }
}

fn route_ack<A: Sample>() -> Message<A> {
    Message {
        sender: id(1),
        body: Body::RouteAck {
            hop_id: 0x0123_4567_89ab_cdef,
        },
    }
}

/// A heartbeat carrying a full leaf set (|L| = 16, the default) and no failures.
fn leaf_set_update_16<A: Sample>() -> Message<A> {
    Message {
        sender: id(1),
        body: Body::LeafSetUpdate {
            heartbeat: true,
            leaf_set: (10..26).map(handle).collect(),
            failed: Vec::new(),
        },
    }
}

/// The encoded frame of `msg`, checked to round-trip.
fn frame<A: Sample>(msg: &Message<A>) -> Vec<u8> {
    let mut f = Vec::new();
    codec::encode(msg, &mut f).expect("encodable");
    assert_eq!(f.len(), codec::encoded_len(msg));
    assert_eq!(codec::decode::<A>(&f).as_ref(), Ok(msg));
    f
}

/// `codec::encode` into a buffer cleared (not freed) before each call.
fn bench_encode<A: Sample>(bencher: Bencher, msg: Message<A>) {
    let len = frame(&msg).len();
    let mut out = Vec::with_capacity(len);
    bencher.counter(BytesCount::new(len)).bench_local(|| {
        out.clear();
        codec::encode(black_box(&msg), &mut out)
    });
}

/// `codec::decode` of a whole frame (the decoded message is dropped outside the timing).
fn bench_decode<A: Sample>(bencher: Bencher, msg: Message<A>) {
    let f = frame(&msg);
    bencher
        .counter(BytesCount::new(f.len()))
        .bench_local(|| codec::decode::<A>(black_box(&f)));
}

fn bench_encoded_len<A: Sample>(bencher: Bencher, msg: Message<A>) {
    bencher.bench_local(|| codec::encoded_len(black_box(&msg)));
}

mod encode {
    use super::*;

    #[divan::bench(types = [u32, SocketAddr])]
    fn route_app_1k<A: Sample>(bencher: Bencher) {
        bench_encode(bencher, super::route_app_1k::<A>());
    }

    #[divan::bench(types = [u32, SocketAddr])]
    fn route_ack<A: Sample>(bencher: Bencher) {
        bench_encode(bencher, super::route_ack::<A>());
    }

    #[divan::bench(types = [u32, SocketAddr])]
    fn leaf_set_update_16<A: Sample>(bencher: Bencher) {
        bench_encode(bencher, super::leaf_set_update_16::<A>());
    }
}

mod decode {
    use super::*;

    #[divan::bench(types = [u32, SocketAddr])]
    fn route_app_1k<A: Sample>(bencher: Bencher) {
        bench_decode(bencher, super::route_app_1k::<A>());
    }

    #[divan::bench(types = [u32, SocketAddr])]
    fn route_ack<A: Sample>(bencher: Bencher) {
        bench_decode(bencher, super::route_ack::<A>());
    }

    #[divan::bench(types = [u32, SocketAddr])]
    fn leaf_set_update_16<A: Sample>(bencher: Bencher) {
        bench_decode(bencher, super::leaf_set_update_16::<A>());
    }
}

mod encoded_len {
    use super::*;

    #[divan::bench(types = [u32, SocketAddr])]
    fn route_app_1k<A: Sample>(bencher: Bencher) {
        bench_encoded_len(bencher, super::route_app_1k::<A>());
    }

    #[divan::bench(types = [u32, SocketAddr])]
    fn route_ack<A: Sample>(bencher: Bencher) {
        bench_encoded_len(bencher, super::route_ack::<A>());
    }

    #[divan::bench(types = [u32, SocketAddr])]
    fn leaf_set_update_16<A: Sample>(bencher: Bencher) {
        bench_encoded_len(bencher, super::leaf_set_update_16::<A>());
    }
}

fn main() {
    divan::main();
}
