//! Connections by index: a vector of slots with a free list, and keys that carry the
//! slot's generation so a stale key (a timer, a job result, a late readiness event) never
//! reaches the connection that reused its slot. A token packs the index, the generation
//! and one bit that tells the client socket from the session's upstream (proxy) socket.

use mio::Token;

/// Bits of a token that hold the slot index; the generation and the upstream bit follow.
const INDEX_BITS: u32 = usize::BITS / 2;
/// Mask of the index bits.
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
/// Mask of a generation (the bits between the index and the upstream bit).
const GENERATION_MASK: usize = (1 << (usize::BITS - INDEX_BITS - 1)) - 1;
/// The token bit naming a session's upstream socket rather than its client socket.
const UPSTREAM_BIT: usize = 1 << (usize::BITS - 1);
/// Largest number of slots: the three highest indices are the listener's, the waker's
/// and the change notifications'.
pub(crate) const MAX_SLOTS: usize = INDEX_MASK - 2;

/// The listener's token (never a slot).
pub(crate) const LISTENER: Token = Token(INDEX_MASK);
/// The waker's token (never a slot).
pub(crate) const WAKER: Token = Token(INDEX_MASK - 1);
/// The token of the file cache's change notifications (never a slot).
pub(crate) const WATCH: Token = Token(INDEX_MASK - 2);

/// Names one occupant of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    index: usize,
    generation: usize,
}

/// Which of a session's sockets a readiness token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The accepted client connection.
    Client,
    /// The connection to a proxy upstream.
    Upstream,
}

impl Key {
    /// The readiness token of the client socket: index and generation packed together.
    pub(crate) fn token(self) -> Token {
        Token(self.index | (self.generation << INDEX_BITS))
    }

    /// The readiness token of the session's upstream socket.
    pub(crate) fn upstream_token(self) -> Token {
        Token(self.token().0 | UPSTREAM_BIT)
    }

    /// The key a token was made from, and which socket it names.
    pub(crate) fn from_token(token: Token) -> (Self, Side) {
        let side = if token.0 & UPSTREAM_BIT == 0 {
            Side::Client
        } else {
            Side::Upstream
        };
        let key = Self {
            index: token.0 & INDEX_MASK,
            generation: (token.0 >> INDEX_BITS) & GENERATION_MASK,
        };
        (key, side)
    }
}

/// One slot: its current generation and occupant.
#[derive(Debug)]
struct Slot<T> {
    generation: usize,
    value: Option<T>,
}

/// A vector of slots that reuses freed ones.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    /// An empty slab.
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Occupied slots.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is occupied.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key the next [`insert`](Self::insert) will return, or `None` when the slab is
    /// full.
    pub(crate) fn vacant_key(&self) -> Option<Key> {
        match self.free.last() {
            Some(&index) => {
                let generation = self.slots.get(index)?.generation;
                Some(Key { index, generation })
            }
            None if self.slots.len() < MAX_SLOTS => Some(Key {
                index: self.slots.len(),
                generation: 0,
            }),
            None => None,
        }
    }

    /// Stores `value`; returns its key, or gives the value back when the slab is full.
    pub(crate) fn insert(&mut self, value: T) -> Result<Key, T> {
        let Some(key) = self.vacant_key() else {
            return Err(value);
        };
        if key.index == self.slots.len() {
            self.slots.push(Slot {
                generation: 0,
                value: Some(value),
            });
        } else {
            self.free.pop();
            match self.slots.get_mut(key.index) {
                Some(slot) => slot.value = Some(value),
                None => return Err(value),
            }
        }
        self.len += 1;
        Ok(key)
    }

    /// The occupant named by `key`, if it is still there.
    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_ref()
    }

    /// The occupant named by `key`, if it is still there.
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_mut()
    }

    /// Takes the occupant named by `key` out; its slot gets a new generation.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// The keys of every occupant, for a pass over all of them.
    pub(crate) fn keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.value.is_some())
            .map(|(index, slot)| Key {
                index,
                generation: slot.generation,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_and_reuse() {
        let mut slab = Slab::new();
        let a = slab.insert("a").unwrap();
        let b = slab.insert("b").unwrap();
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.get_mut(a), Some(&mut "a"));
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None, "removed twice");
        assert_eq!(slab.vacant_key().map(|k| k.index), Some(a.index));
        let c = slab.insert("c").unwrap();
        assert_eq!(c.index, a.index, "the freed slot is reused");
        assert_ne!(c, a);
        assert_eq!(slab.get_mut(a), None, "a stale key misses the new occupant");
        assert_eq!(slab.get_mut(c), Some(&mut "c"));
        assert_eq!(slab.keys(), vec![c, b]);
        assert_eq!(slab.len(), 2);
        assert!(!slab.is_empty());
    }

    #[test]
    fn tokens_round_trip_and_avoid_the_reserved_ones() {
        let mut slab = Slab::new();
        let first = slab.insert(()).unwrap();
        slab.remove(first);
        let second = slab.insert(()).unwrap();
        for key in [first, second] {
            assert_eq!(Key::from_token(key.token()), (key, Side::Client));
            assert_eq!(Key::from_token(key.upstream_token()), (key, Side::Upstream));
            for token in [key.token(), key.upstream_token()] {
                assert_ne!(token, LISTENER);
                assert_ne!(token, WAKER);
                assert_ne!(token, WATCH);
            }
            assert_ne!(key.token(), key.upstream_token());
        }
        assert_ne!(
            first.token(),
            second.token(),
            "the generation is part of the token"
        );
        assert_eq!(Key::from_token(LISTENER).0.index, INDEX_MASK);
    }

    #[test]
    fn generations_wrap_below_the_upstream_bit() {
        let top = Key {
            index: 3,
            generation: GENERATION_MASK,
        };
        assert_eq!(Key::from_token(top.token()), (top, Side::Client));
        assert_eq!(Key::from_token(top.upstream_token()), (top, Side::Upstream));
        assert_eq!(top.token().0 & UPSTREAM_BIT, 0);
        let mut slab = Slab::new();
        let key = slab.insert(()).unwrap();
        if let Some(slot) = slab.slots.get_mut(key.index) {
            slot.generation = GENERATION_MASK;
        }
        let last = Key {
            index: key.index,
            generation: GENERATION_MASK,
        };
        slab.remove(last);
        assert_eq!(
            slab.vacant_key().map(|k| k.generation),
            Some(0),
            "wraps to 0"
        );
    }

    #[test]
    fn a_stale_token_never_matches() {
        let mut slab = Slab::new();
        let old = slab.insert(1).unwrap();
        slab.remove(old);
        slab.insert(2).unwrap();
        assert_eq!(slab.get_mut(Key::from_token(old.token()).0), None);
        assert_eq!(slab.remove(Key::from_token(old.token()).0), None);
        assert_eq!(
            slab.get_mut(Key {
                index: 99,
                generation: 0
            }),
            None
        );
    }
}
