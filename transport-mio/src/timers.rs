//! Deadlines of every connection in one min-heap, invalidated lazily.
//!
//! A connection's deadline moves on every request (the idle timeout restarts), so pushing
//! an entry per move would fill the heap with stale ones. Instead each connection keeps a
//! [`TimerSlot`]: the deadline it wants now and the earliest entry it has in the heap. A
//! later deadline pushes nothing; when the old entry comes due it is re-queued at the
//! wanted time. Only an earlier deadline pushes a new entry. The entries of closed
//! connections are pruned once they outnumber the live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::slab::Key;

/// Stale entries tolerated beyond the live ones before the heap is pruned.
const PRUNE_SLACK: usize = 1024;

/// One connection's view of its timer.
#[derive(Debug, Default)]
pub(crate) struct TimerSlot {
    /// When the connection must be woken next.
    wanted: Option<Instant>,
    /// The entry in the heap that stands for this connection.
    queued: Option<Instant>,
}

impl TimerSlot {
    /// Whether this slot's entry in the heap is the one due at `at`.
    pub(crate) fn is_queued_at(&self, at: Instant) -> bool {
        self.queued == Some(at)
    }
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

    /// Drops the entries nobody waits for (their connection closed, or an earlier entry
    /// replaced them) once there are more than `live` connections could hold plus a
    /// slack: without it, a flood of short connections keeps one entry per connection
    /// until its deadline passes (megabytes at 20,000 connections a second). `waits`
    /// says whether the connection `key` still has its entry at that time. Pruning costs
    /// a pass over the heap after at least as many stale entries piled up: amortized O(1).
    pub(crate) fn prune(&mut self, live: usize, mut waits: impl FnMut(Key, Instant) -> bool) {
        if self.heap.len() <= 2 * live + PRUNE_SLACK {
            return;
        }
        self.heap.retain(|Reverse((at, key))| waits(*key, *at));
        if self.heap.capacity() > 4 * (self.heap.len() + PRUNE_SLACK) {
            self.heap.shrink_to_fit();
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

    #[test]
    fn prune_drops_the_entries_of_closed_connections() {
        let t0 = Instant::now();
        let ks = keys(3000);
        let mut timers = Timers::default();
        let mut slots: Vec<(Key, TimerSlot)> =
            ks.iter().map(|k| (*k, TimerSlot::default())).collect();
        for (i, (key, slot)) in slots.iter_mut().enumerate() {
            timers.arm(slot, *key, Some(t0 + Duration::from_millis(i as u64)));
        }
        // All 3000 still wait: nothing to drop.
        let waits = |slots: &[(Key, TimerSlot)], key: Key, at: Instant| {
            slots.iter().any(|(k, s)| *k == key && s.is_queued_at(at))
        };
        timers.prune(slots.len(), |k, at| waits(&slots, k, at));
        assert_eq!(timers.len(), 3000);
        // 2990 close; their entries go at the next prune, the 10 others stay and fire.
        slots.truncate(10);
        timers.prune(slots.len(), |k, at| waits(&slots, k, at));
        assert_eq!(timers.len(), 10);
        let fired = due(&mut timers, &mut slots, t0 + Duration::from_secs(10));
        assert_eq!(fired, ks[..10].to_vec());
    }
}
