//! Deadlines of every connection in one min-heap, invalidated lazily.
//!
//! A connection's deadline moves on every request (the idle timeout restarts), so pushing
//! an entry per move would fill the heap with stale ones. Instead each connection keeps a
//! [`TimerSlot`]: the deadline it wants now and the earliest entry it has in the heap. A
//! later deadline pushes nothing; when the old entry comes due it is re-queued at the
//! wanted time. Only an earlier deadline pushes a new entry.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::slab::Key;

/// One connection's view of its timer.
#[derive(Debug, Default)]
pub(crate) struct TimerSlot {
    /// When the connection must be woken next.
    wanted: Option<Instant>,
    /// The entry in the heap that stands for this connection.
    queued: Option<Instant>,
}

/// The heap of `(deadline, connection)` entries.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Key)>>,
}

impl Timers {
    /// Sets the deadline of the connection `key` owning `slot`.
    pub(crate) fn arm(&mut self, slot: &mut TimerSlot, key: Key, wanted: Option<Instant>) {
        slot.wanted = wanted;
        if let Some(at) = wanted {
            if slot.queued.is_none_or(|queued| at < queued) {
                self.heap.push(Reverse((at, key)));
                slot.queued = Some(at);
            }
        }
    }

    /// The earliest entry's time (possibly a stale entry: waking for it is harmless).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns an entry due by `now`; check it with [`fire`](Self::fire).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Key)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    /// Takes a popped entry for `slot` (looked up by its key): true if the slot's
    /// deadline has passed and the connection must handle it; a deadline still ahead is
    /// re-queued, a stale entry is ignored.
    pub(crate) fn fire(
        &mut self,
        slot: &mut TimerSlot,
        key: Key,
        entry: Instant,
        now: Instant,
    ) -> bool {
        if slot.queued != Some(entry) {
            return false; // an earlier entry replaced this one
        }
        slot.queued = None;
        match slot.wanted {
            Some(at) if at <= now => true,
            wanted => {
                self.arm(slot, key, wanted);
                false
            }
        }
    }

    /// Entries in the heap, stale ones included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::slab::Slab;

    fn keys(n: usize) -> Vec<Key> {
        let mut slab = Slab::new();
        (0..n).map(|i| slab.insert(i).unwrap()).collect()
    }

    /// Pops and fires everything due; returns the keys that must handle a timeout.
    fn due(timers: &mut Timers, slots: &mut [(Key, TimerSlot)], now: Instant) -> Vec<Key> {
        let mut fired = Vec::new();
        while let Some((at, key)) = timers.pop_due(now) {
            let (_, slot) = slots.iter_mut().find(|(k, _)| *k == key).unwrap();
            if timers.fire(slot, key, at, now) {
                fired.push(key);
            }
        }
        fired
    }

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let ks = keys(2);
        let mut timers = Timers::default();
        let mut slots = vec![(ks[0], TimerSlot::default()), (ks[1], TimerSlot::default())];
        timers.arm(&mut slots[0].1, ks[0], Some(t0 + Duration::from_secs(2)));
        timers.arm(&mut slots[1].1, ks[1], Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert!(due(&mut timers, &mut slots, t0).is_empty());
        assert_eq!(
            due(&mut timers, &mut slots, t0 + Duration::from_secs(1)),
            vec![ks[1]]
        );
        assert_eq!(
            due(&mut timers, &mut slots, t0 + Duration::from_secs(5)),
            vec![ks[0]]
        );
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn a_later_deadline_pushes_nothing_and_requeues_when_due() {
        let t0 = Instant::now();
        let key = keys(1)[0];
        let mut timers = Timers::default();
        let mut slots = vec![(key, TimerSlot::default())];
        for s in 1..=100 {
            timers.arm(&mut slots[0].1, key, Some(t0 + Duration::from_secs(s)));
        }
        assert_eq!(timers.len(), 1, "moving a deadline later adds no entry");
        assert!(due(&mut timers, &mut slots, t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(
            timers.next(),
            Some(t0 + Duration::from_secs(100)),
            "re-queued at the wanted time"
        );
        assert_eq!(
            due(&mut timers, &mut slots, t0 + Duration::from_secs(100)),
            vec![key]
        );
    }

    #[test]
    fn an_earlier_deadline_replaces_and_disarming_cancels() {
        let t0 = Instant::now();
        let key = keys(1)[0];
        let mut timers = Timers::default();
        let mut slots = vec![(key, TimerSlot::default())];
        timers.arm(&mut slots[0].1, key, Some(t0 + Duration::from_secs(10)));
        timers.arm(&mut slots[0].1, key, Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            due(&mut timers, &mut slots, t0 + Duration::from_secs(20)),
            vec![key],
            "fires once"
        );
        timers.arm(&mut slots[0].1, key, Some(t0 + Duration::from_secs(30)));
        timers.arm(&mut slots[0].1, key, None);
        assert_eq!(slots[0].1.wanted, None);
        assert!(due(&mut timers, &mut slots, t0 + Duration::from_secs(40)).is_empty());
        assert_eq!(timers.len(), 0);
    }
}
