//! Cutting a big result into cargo chunks counted in characters (BEHAVIOUR.md: Workers › Result
//! retention).

use std::num::NonZeroUsize;

use super::error::WorkerError;

/// How a finished result of `text` is delivered with `max_chunk_size`: `None` inline,
/// else the cargo pieces in order; a size of 0 cannot split and is an error.
pub fn cargo_pieces(text: &str, max_chunk_size: usize) -> Result<Option<Vec<&str>>, WorkerError> {
    if !exceeds_chars(text, max_chunk_size) {
        return Ok(None);
    }
    let size =
        NonZeroUsize::new(max_chunk_size).ok_or(WorkerError::InvalidChunkSize(max_chunk_size))?;
    Ok(Some(split_chars(text, size)))
}

/// Whether `text` has more than `max` characters (Unicode scalar values, like Python's
/// `len`), without counting past `max`.
pub(super) fn exceeds_chars(text: &str, max: usize) -> bool {
    text.len() > max && text.chars().nth(max).is_some()
}

/// Cuts `text` into consecutive pieces of `size` characters (the last may be shorter),
/// always on character boundaries.
pub(super) fn split_chars(text: &str, size: NonZeroUsize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let cut = rest
            .char_indices()
            .nth(size.get())
            .map_or(rest.len(), |(index, _)| index);
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn pieces_only_past_the_size() {
        assert_eq!(cargo_pieces("abc", 3), Ok(None));
        assert_eq!(cargo_pieces("abcd", 3), Ok(Some(vec!["abc", "d"])));
        assert_eq!(cargo_pieces("", 0), Ok(None));
        assert_eq!(cargo_pieces("a", 0), Err(WorkerError::InvalidChunkSize(0)));
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(!exceeds_chars("ééé", 3));
        assert!(exceeds_chars("ééé", 2));
        assert!(!exceeds_chars("", 0));
        assert!(exceeds_chars("a", 0));
        assert!(!exceeds_chars("abc", usize::MAX));
    }

    #[test]
    fn splits_ascii_in_order() {
        assert_eq!(split_chars("abcdefg", size(3)), ["abc", "def", "g"]);
        assert_eq!(split_chars("abcdef", size(3)), ["abc", "def"]);
        assert_eq!(split_chars("ab", size(5)), ["ab"]);
        assert!(split_chars("", size(1)).is_empty());
    }

    #[test]
    fn splits_multi_byte_characters_on_boundaries() {
        let text = "aé€😀b🎉";
        let pieces = split_chars(text, size(2));
        assert_eq!(pieces, ["aé", "€😀", "b🎉"]);
        assert_eq!(pieces.concat(), text);
        assert_eq!(split_chars("😀😀😀", size(1)), ["😀", "😀", "😀"]);
    }
}
