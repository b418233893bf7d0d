//! The event queue: a calendar of fixed-width time buckets in front of two small binary
//! heaps, popping exactly in `(time, sequence)` order.
//!
//! A million-node run keeps a million or more events queued (every node's next wake-up,
//! spread over the 10 s heartbeat interval, plus messages in flight). In one binary heap of
//! that size every pop walks ~20 levels, most of them cache misses. Here an event goes
//! into the bucket of its time (`BUCKET_US` wide, `BUCKETS` of them ahead of the current
//! one: a plain `Vec` push), and only the current bucket's events are in the `near` heap,
//! which stays around a thousand entries and in cache. Events beyond the calendar's
//! horizon wait in the `far` heap (rare: long timers, churn sessions). The pop order is the
//! same as one heap's, so runs (and trace hashes) do not depend on this structure.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A queued event: (time in µs, sequence number, payload). Sequence numbers are unique.
pub(crate) type Key = (u64, u64, u64);

/// log2 of the bucket width in microseconds (1.024 ms).
const BUCKET_SHIFT: u32 = 10;
/// Buckets ahead of the current one (a power of two): a horizon of about 67 s.
const BUCKETS: usize = 1 << 16;

/// Events in `(time, sequence)` order; see the module docs.
#[derive(Debug)]
pub(crate) struct EventQueue {
    /// Every queued event whose bucket number is at most `cur`.
    near: BinaryHeap<Reverse<Key>>,
    /// Bucket `b` (`cur < b < cur + BUCKETS`) lives at `b % BUCKETS`.
    buckets: Vec<Vec<Reverse<Key>>>,
    /// Events in `buckets`.
    in_buckets: usize,
    /// Events whose bucket was beyond the calendar when they were pushed.
    far: BinaryHeap<Reverse<Key>>,
    /// The current bucket number (time >> BUCKET_SHIFT).
    cur: u64,
}

impl EventQueue {
    /// An empty queue starting at time 0.
    pub(crate) fn new() -> EventQueue {
        EventQueue {
            near: BinaryHeap::new(),
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            in_buckets: 0,
            far: BinaryHeap::new(),
            cur: 0,
        }
    }

    /// Queued events.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.near.len() + self.in_buckets + self.far.len()
    }

    /// Queues an event. Its time may be anything, even before events already popped.
    pub(crate) fn push(&mut self, key: Key) {
        let b = key.0 >> BUCKET_SHIFT;
        if b <= self.cur {
            self.near.push(Reverse(key));
        } else if b - self.cur < BUCKETS as u64 {
            self.buckets[b as usize % BUCKETS].push(Reverse(key));
            self.in_buckets += 1;
        } else {
            self.far.push(Reverse(key));
        }
    }

    /// The least event, without removing it.
    pub(crate) fn peek(&mut self) -> Option<&Key> {
        if self.near.is_empty() && !self.advance() {
            return None;
        }
        self.near.peek().map(|Reverse(k)| k)
    }

    /// Removes and returns the least event.
    pub(crate) fn pop(&mut self) -> Option<Key> {
        if self.near.is_empty() && !self.advance() {
            return None;
        }
        self.near.pop().map(|Reverse(k)| k)
    }

    /// Moves to the next bucket holding events and loads it into the empty `near` heap;
    /// false when nothing is queued.
    fn advance(&mut self) -> bool {
        debug_assert!(self.near.is_empty());
        loop {
            if self.in_buckets == 0 {
                // Only far events: jump straight to the first one's bucket.
                let Some(Reverse(k)) = self.far.peek() else {
                    return false;
                };
                self.cur = self.cur.max(k.0 >> BUCKET_SHIFT);
            } else {
                self.cur += 1;
            }
            let slot = self.cur as usize % BUCKETS;
            let mut v = std::mem::take(&mut self.buckets[slot]);
            self.in_buckets -= v.len();
            while self
                .far
                .peek()
                .is_some_and(|Reverse(k)| k.0 >> BUCKET_SHIFT <= self.cur)
            {
                v.extend(self.far.pop());
            }
            if !v.is_empty() {
                // The bucket's vector becomes the heap (heapified in place). The old heap's
                // buffer is freed, not kept in the slot: 65,536 idle slots each holding a
                // bucket's worth of capacity would cost more than the allocations.
                self.near = BinaryHeap::from(v);
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pastry_core::rng::Rng;

    /// Against one binary heap: same pops for random pushes interleaved with pops, times
    /// spanning the current bucket, the calendar and beyond it.
    #[test]
    fn pops_in_the_same_order_as_one_heap() {
        let mut rng = Rng::new(7);
        let mut q = EventQueue::new();
        let mut model: BinaryHeap<Reverse<Key>> = BinaryHeap::new();
        let mut now = 0u64;
        let mut seq = 0u64;
        for round in 0..200_000u64 {
            let pushes = rng.below(3);
            for _ in 0..pushes {
                let delay = match rng.below(10) {
                    0 => 0,
                    1 => rng.below(1 << 12),
                    2 => rng.below(200_000_000),
                    3 => rng.below(1 << 30),
                    _ => rng.below(150_000),
                };
                seq += 1;
                let k = (now + delay, seq, round);
                q.push(k);
                model.push(Reverse(k));
            }
            if rng.below(2) == 0 {
                let a = q.pop();
                let b = model.pop().map(|Reverse(k)| k);
                assert_eq!(a, b);
                if let Some(k) = a {
                    now = k.0;
                }
            }
            assert_eq!(q.len(), model.len());
        }
        while let Some(Reverse(k)) = model.pop() {
            assert_eq!(q.peek().copied(), Some(k));
            assert_eq!(q.pop(), Some(k));
        }
        assert_eq!(q.pop(), None);
    }
}
