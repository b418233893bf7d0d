//! Node handles: an id together with the address it is reached at.
//!
//! The address type is generic: the simulator uses a `u32` node index, the network host a
//! `SocketAddr`. Both implement [`Address`], which includes the address's wire form.

use core::fmt::Debug;
use core::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::NodeId;
use crate::codec::{DecodeError, Reader};

/// What a host uses to reach a node. Small, copyable, totally ordered (for deterministic
/// maps), and encodable on the wire inside node handles.
pub trait Address: Copy + Eq + Ord + Hash + Debug + Send + Sync + 'static {
    /// Appends the wire form.
    fn encode(&self, out: &mut Vec<u8>);
    /// Length of the wire form in bytes.
    fn encoded_len(&self) -> usize;
    /// Reads the wire form.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are truncated or malformed.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

impl Address for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    fn encoded_len(&self) -> usize {
        4
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u32()
    }
}

impl Address for SocketAddr {
    fn encode(&self, out: &mut Vec<u8>) {
        match self.ip() {
            IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&self.port().to_be_bytes());
    }
    fn encoded_len(&self) -> usize {
        match self {
            SocketAddr::V4(_) => 1 + 4 + 2,
            SocketAddr::V6(_) => 1 + 16 + 2,
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ip = match r.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
            _ => return Err(DecodeError::Malformed("address family")),
        };
        Ok(SocketAddr::new(ip, r.u16()?))
    }
}

/// A node's id and address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeHandle<A> {
    /// The node's id.
    pub id: NodeId,
    /// Where the node is reached.
    pub addr: A,
}

impl<A> NodeHandle<A> {
    /// A handle for `id` at `addr`.
    pub const fn new(id: NodeId, addr: A) -> Self {
        NodeHandle { id, addr }
    }
}

impl<A: Debug> Debug for NodeHandle<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}@{:?}", self.id, self.addr)
    }
}
