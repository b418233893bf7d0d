//! 128-bit node ids and keys: digits, shared prefixes and distances on the ring.
//!
//! Ids and keys share one type, [`NodeId`]: Pastry routes a key to the node whose id is
//! numerically closest to it on the circular 2^128 id space. Digits are `b` bits wide
//! (1..=8); digit 0 is the most significant. When `b` does not divide 128 the last digit is
//! the remaining low bits.
//!
//! # Tie rule
//! Two distinct ids can be equally far from a key only when one lies `d` clockwise of the key
//! and the other `d` counter-clockwise. The clockwise one (numerically `key + d`) wins. Every
//! node applies the same rule, which is what keeps delivery consistent.

use core::cmp::Ordering;
use core::fmt;

/// Number of bits in an id.
pub const ID_BITS: u32 = 128;

/// A 128-bit identifier on the Pastry ring: a node id or a key.
///
/// Stored as big-endian bytes so that tables of handles pack tightly (alignment 1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId([u8; 16]);

impl NodeId {
    /// The id zero.
    pub const ZERO: NodeId = NodeId([0; 16]);
    /// The largest id, 2^128 - 1.
    pub const MAX: NodeId = NodeId([0xff; 16]);

    /// Builds an id from its numeric value.
    pub const fn from_u128(v: u128) -> NodeId {
        NodeId(v.to_be_bytes())
    }

    /// The numeric value.
    pub const fn as_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// Builds an id from 16 big-endian bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> NodeId {
        NodeId(bytes)
    }

    /// The 16 big-endian bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// Parses 32 hexadecimal digits (either case).
    ///
    /// # Errors
    /// [`ParseIdError`] when the text is not exactly 32 hex digits.
    pub fn from_hex(s: &str) -> Result<NodeId, ParseIdError> {
        if s.len() != 32 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(ParseIdError);
        }
        u128::from_str_radix(s, 16)
            .map(NodeId::from_u128)
            .map_err(|_| ParseIdError)
    }

    /// Number of digits of `b` bits in an id: `ceil(128 / b)`.
    pub const fn digits(b: u8) -> usize {
        (ID_BITS as usize).div_ceil(b as usize)
    }

    /// Digit `i` (0 = most significant) for digits of `b` bits.
    ///
    /// # Panics
    /// When `b` is not in 1..=8 or `i >= digits(b)`; callers pass validated config.
    pub fn digit(self, i: usize, b: u8) -> u8 {
        assert!(
            (1..=8).contains(&b) && i < Self::digits(b),
            "digit index out of range"
        );
        let b = b as u32;
        let start = i as u32 * b; // bit offset from the top
        let width = b.min(ID_BITS - start);
        let shifted = self.as_u128() >> (ID_BITS - start - width);
        (shifted & ((1u128 << width) - 1)) as u8
    }

    /// Number of leading digits of `b` bits that `self` and `other` have in common.
    pub fn shared_prefix_len(self, other: NodeId, b: u8) -> usize {
        let x = self.as_u128() ^ other.as_u128();
        if x == 0 {
            return Self::digits(b);
        }
        (x.leading_zeros() / b as u32) as usize
    }

    /// Returns this id with digit `i` replaced by `d` and every later bit cleared: the
    /// smallest id in routing-table slot `(i, d)` relative to `self`.
    pub fn with_digit(self, i: usize, d: u8, b: u8) -> NodeId {
        let b = b as u32;
        let start = i as u32 * b;
        let width = b.min(ID_BITS - start);
        let low = ID_BITS - start - width;
        let keep = if start == 0 {
            0
        } else {
            self.as_u128() & (!0u128 << (ID_BITS - start))
        };
        NodeId::from_u128(keep | ((d as u128 & ((1u128 << width) - 1)) << low))
    }

    /// Clockwise distance from `self` to `other`: `other - self mod 2^128`.
    pub const fn cw_distance(self, other: NodeId) -> u128 {
        other.as_u128().wrapping_sub(self.as_u128())
    }

    /// Ring distance: the shorter of the two ways round.
    pub const fn distance(self, other: NodeId) -> u128 {
        let cw = self.cw_distance(other);
        let ccw = other.cw_distance(self);
        if cw < ccw { cw } else { ccw }
    }

    /// Orders `a` and `b` by closeness to `self` (the key): `Less` means `a` is closer.
    /// Ties follow the module's rule (the clockwise candidate wins); equal ids are `Equal`.
    pub fn cmp_closeness(self, a: NodeId, b: NodeId) -> Ordering {
        if a == b {
            return Ordering::Equal;
        }
        let (da, db) = (self.distance(a), self.distance(b));
        da.cmp(&db).then_with(|| {
            // Equal distance, distinct ids: exactly one of them is clockwise of the key.
            let a_cw = self.cw_distance(a) == da;
            if a_cw {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        })
    }

    /// True when `a` is strictly closer to `self` (the key) than `b`.
    pub fn is_closer(self, a: NodeId, b: NodeId) -> bool {
        self.cmp_closeness(a, b) == Ordering::Less
    }

    /// True when `x` lies on the clockwise arc from `from` to `to`, both ends included.
    pub const fn in_cw_arc(x: NodeId, from: NodeId, to: NodeId) -> bool {
        from.cw_distance(x) <= from.cw_distance(to)
    }

    /// Adds `d` modulo 2^128.
    pub const fn wrapping_add(self, d: u128) -> NodeId {
        NodeId::from_u128(self.as_u128().wrapping_add(d))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight digits are enough to tell ids apart in logs and test failures.
        write!(f, "<{:08x}..>", self.as_u128() >> 96)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.as_u128())
    }
}

impl fmt::LowerHex for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.as_u128(), f)
    }
}

impl core::str::FromStr for NodeId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::from_hex(s)
    }
}

/// The text was not 32 hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseIdError;

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id is exactly 32 hexadecimal digits")
    }
}

impl std::error::Error for ParseIdError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(v: u128) -> NodeId {
        NodeId::from_u128(v)
    }

    #[test]
    fn digits_b4() {
        let x = id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(NodeId::digits(4), 32);
        assert_eq!(x.digit(0, 4), 0);
        assert_eq!(x.digit(1, 4), 1);
        assert_eq!(x.digit(15, 4), 0xf);
        assert_eq!(x.digit(31, 4), 0xf);
    }

    #[test]
    fn digits_b3_last_digit_is_short() {
        assert_eq!(NodeId::digits(3), 43);
        // 128 = 42*3 + 2: the last digit has 2 bits.
        assert_eq!(id(0b11).digit(42, 3), 3);
        assert_eq!(id(0b111).digit(41, 3), 1);
        assert_eq!(id(u128::MAX).digit(0, 3), 7);
    }

    #[test]
    fn tie_goes_clockwise() {
        let key = id(100);
        assert_eq!(key.cmp_closeness(id(110), id(90)), Ordering::Less);
        assert_eq!(key.cmp_closeness(id(90), id(110)), Ordering::Greater);
        // Across zero.
        let key = id(0);
        assert!(key.is_closer(id(5), id(u128::MAX - 4)));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let x = id(0xdead_beef);
        assert_eq!(NodeId::from_hex(&x.to_string()), Ok(x));
        assert!(NodeId::from_hex("xyz").is_err());
        assert!(NodeId::from_hex(&"f".repeat(33)).is_err());
        assert!(NodeId::from_hex(&format!("+{}", "0".repeat(31))).is_err());
    }

    proptest! {
        #[test]
        fn digits_reassemble(v: u128, b in 1u8..=8) {
            let x = id(v);
            let n = NodeId::digits(b);
            let mut acc: u128 = 0;
            for i in 0..n {
                let width = (b as u32).min(ID_BITS - i as u32 * b as u32);
                acc = (acc << width) | x.digit(i, b) as u128;
            }
            prop_assert_eq!(acc, v);
        }

        #[test]
        fn prefix_matches_digitwise(a: u128, c: u128, b in 1u8..=8) {
            let (x, y) = (id(a), id(c));
            let n = NodeId::digits(b);
            let brute = (0..n).take_while(|&i| x.digit(i, b) == y.digit(i, b)).count();
            prop_assert_eq!(x.shared_prefix_len(y, b), brute);
        }

        #[test]
        fn with_digit_lands_in_slot(a: u128, b in 1u8..=8, i in 0usize..16, d: u8) {
            let x = id(a);
            let i = i % NodeId::digits(b);
            let width = (b as u32).min(ID_BITS - i as u32 * b as u32);
            let d = (d as u16 & ((1u16 << width) - 1)) as u8;
            let y = x.with_digit(i, d, b);
            prop_assert_eq!(y.digit(i, b), d);
            prop_assert!(x.shared_prefix_len(y, b) >= i);
        }

        #[test]
        fn distance_symmetric_and_bounded(a: u128, c: u128) {
            let (x, y) = (id(a), id(c));
            prop_assert_eq!(x.distance(y), y.distance(x));
            prop_assert!(x.distance(y) <= 1u128 << 127);
            prop_assert_eq!(x.cw_distance(y).wrapping_add(y.cw_distance(x)), 0);
        }

        #[test]
        fn closeness_is_a_strict_total_order(k: u128, a: u128, c: u128, e: u128) {
            let key = id(k);
            let (x, y, z) = (id(a), id(c), id(e));
            // Antisymmetric and consistent with equality.
            prop_assert_eq!(key.cmp_closeness(x, y), key.cmp_closeness(y, x).reverse());
            prop_assert_eq!(key.cmp_closeness(x, y) == Ordering::Equal, x == y);
            // Transitive.
            if key.is_closer(x, y) && key.is_closer(y, z) {
                prop_assert!(key.is_closer(x, z));
            }
        }
    }
}
