//! Task and cargo keys: unsigned 32-bit numbers written as decimal strings (BEHAVIOUR.md: Workers ›
//! Protocol).

use std::fmt;
use std::time::Duration;

/// Key of a task or of a cargo chunk; shown (and sent to clients) as its decimal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKey(u32);

impl TaskKey {
    /// Wraps a raw number; used when a key is derived from a seed.
    pub fn new(value: u32) -> Self {
        Self(value)
    }

    /// The key after this one, wrapping at `u32::MAX`; used to probe for an unused key.
    pub fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }

    /// Reads a key from its canonical decimal text (`"42"`, not `"042"` or `"+42"`), so
    /// that only the exact strings the server handed out name a task, as in the original.
    pub(crate) fn parse_canonical(text: &str) -> Option<Self> {
        let canonical = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        if !canonical {
            return None;
        }
        text.parse().ok().map(Self)
    }

    /// A seed derived from this key, scattered by CRC-32; used for the keys of its cargo.
    pub fn scattered(self) -> Self {
        Self(crc32fast::hash(&self.0.to_be_bytes()))
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Seed for [`WorkerRegistry::start`](super::WorkerRegistry::start) from a clock reading
/// the caller took (e.g. time since the server started): the CRC-32 of its decimal text
/// in seconds, like the original's keys.
pub(crate) fn clock_seed(elapsed: Duration) -> u32 {
    crc32fast::hash(format!("{}", elapsed.as_secs_f64()).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_decimal() {
        assert_eq!(TaskKey::new(3_163_488_080).to_string(), "3163488080");
        assert_eq!(TaskKey::new(0).to_string(), "0");
    }

    #[test]
    fn next_wraps_around() {
        assert_eq!(TaskKey::new(u32::MAX).next(), TaskKey::new(0));
        assert_eq!(TaskKey::new(7).next(), TaskKey::new(8));
    }

    #[test]
    fn parses_only_canonical_decimal() {
        assert_eq!(
            TaskKey::parse_canonical("3163488080"),
            Some(TaskKey::new(3_163_488_080))
        );
        assert_eq!(TaskKey::parse_canonical("0"), Some(TaskKey::new(0)));
        assert_eq!(
            TaskKey::parse_canonical("4294967295"),
            Some(TaskKey::new(u32::MAX))
        );
        for bad in [
            "",
            "042",
            "+42",
            "-1",
            " 42",
            "42 ",
            "4294967296",
            "1e3",
            "4.0",
            "abc",
            "00",
        ] {
            assert_eq!(TaskKey::parse_canonical(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn scattered_is_crc32_of_big_endian_bytes() {
        assert_eq!(
            TaskKey::new(1).scattered(),
            TaskKey::new(crc32fast::hash(&[0, 0, 0, 1]))
        );
        assert_ne!(TaskKey::new(1).scattered(), TaskKey::new(2));
    }

    #[test]
    fn clock_seed_hashes_seconds_text() {
        assert_eq!(
            clock_seed(Duration::from_millis(1500)),
            crc32fast::hash(b"1.5")
        );
        assert_ne!(
            clock_seed(Duration::from_millis(1500)),
            clock_seed(Duration::from_millis(1501))
        );
    }
}
