//! A min-heap that keeps its least element inline. A node's timer heap is asked for its
//! earliest deadline after every message (by the host, and to drop cancelled timers), and
//! most messages set no timer: with the head inline that question reads no heap memory,
//! which in a simulator holding a million nodes is a cache miss each.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A min-heap: the least element in `head`, the others in `rest`.
#[derive(Debug, Clone)]
pub(crate) struct HeadHeap<T> {
    head: Option<T>,
    rest: BinaryHeap<Reverse<T>>,
}

impl<T: Ord + Copy> HeadHeap<T> {
    pub(crate) fn new() -> Self {
        HeadHeap {
            head: None,
            rest: BinaryHeap::new(),
        }
    }

    pub(crate) fn push(&mut self, x: T) {
        match self.head {
            None => self.head = Some(x),
            Some(h) if x < h => {
                self.rest.push(Reverse(h));
                self.head = Some(x);
            }
            Some(_) => self.rest.push(Reverse(x)),
        }
    }

    /// The least element.
    pub(crate) fn peek(&self) -> Option<&T> {
        self.head.as_ref()
    }

    /// Removes and returns the least element.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let h = self.head.take()?;
        self.head = self.rest.pop().map(|Reverse(x)| x);
        Some(h)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    pub(crate) fn clear(&mut self) {
        self.head = None;
        self.rest.clear();
    }

    /// Gives memory back after a burst left the heap mostly empty.
    pub(crate) fn shrink(&mut self) {
        if self.rest.capacity() > 64 && self.rest.len() * 4 < self.rest.capacity() {
            self.rest.shrink_to(self.rest.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Against a plain `BinaryHeap` under random pushes (many equal) and pops: same
    /// elements out in the same order.
    #[test]
    fn pops_as_a_binary_heap() {
        let mut rng = Rng::new(5);
        let mut h = HeadHeap::new();
        let mut model = BinaryHeap::new();
        for step in 0..20_000u32 {
            if rng.below(3) < 2 {
                let x = (rng.below(50), rng.below(4));
                h.push(x);
                model.push(Reverse(x));
            } else {
                assert_eq!(h.pop(), model.pop().map(|Reverse(x)| x));
            }
            if step % 5_000 == 4_999 {
                h.clear();
                model.clear();
            }
            assert_eq!(h.len(), model.len());
            assert_eq!(h.peek(), model.peek().map(|Reverse(x)| x));
            h.shrink();
        }
    }
}
