//! Shell-style patterns with the semantics of Python's `fnmatch` on POSIX, and the
//! white/black lists built on them.
//!
//! `*` matches any run of characters including `/`, `?` one character, `[...]` a set
//! (`[!...]` its complement); a `[` without a closing `]` is literal. Case-sensitive.

/// The default white list of `add_default_white_list()` (BEHAVIOUR.md: Static files › White and
/// black lists), in the original's order.
const DEFAULT_WHITE_LIST: [&str; 21] = [
    "*.css", "*.csv", "*.eot", "*.gif", "*.htm", "*.html", "*.ico", "*.jpeg", "*.jpg", "*.js",
    "*.json", "*.md", "*.otf", "*.pdf", "*.png", "*.svg", "*.tsv", "*.ttf", "*.txt", "*.woff",
    "*.woff2",
];

/// A compiled shell-style pattern.
///
/// Matching runs in O(pattern × text) time at worst: one `*` is backtracked at a time, so
/// patterns such as `*a*a*a*b` cannot blow up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Compiles `pattern`; every string is a valid pattern.
    pub(super) fn new(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            match c {
                '*' => {
                    // Consecutive stars are equivalent to one.
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::Any),
                '[' => match parse_class(&chars, i) {
                    Some((class, next)) => {
                        tokens.push(class);
                        i = next;
                    }
                    None => tokens.push(Token::Literal('[')),
                },
                _ => tokens.push(Token::Literal(c)),
            }
        }
        Self { tokens }
    }

    /// Whether the whole of `text` matches the pattern.
    pub(super) fn matches(&self, text: &str) -> bool {
        let mut p = 0;
        let mut t = 0;
        // The last star seen and the text position it currently stops at.
        let mut backtrack: Option<(usize, usize)> = None;
        loop {
            let ch = text.get(t..).and_then(|rest| rest.chars().next());
            match (self.tokens.get(p), ch) {
                (Some(Token::Star), _) => {
                    p += 1;
                    backtrack = Some((p, t));
                    continue;
                }
                (Some(token), Some(c)) if token.matches_char(c) => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                (None, None) => return true,
                _ => {}
            }
            // Mismatch: let the last star swallow one more character, if any is left.
            let Some((star_p, star_t)) = backtrack else {
                return false;
            };
            let Some(c) = text.get(star_t..).and_then(|rest| rest.chars().next()) else {
                return false;
            };
            let next_t = star_t + c.len_utf8();
            backtrack = Some((star_p, next_t));
            p = star_p;
            t = next_t;
        }
    }
}

/// One element of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A character matched exactly.
    Literal(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters.
    Star,
    /// `[...]`: one character in (or, negated, not in) the inclusive ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    /// Whether this single-character token matches `c` (`Star` is handled by the matcher).
    fn matches_char(&self, c: char) -> bool {
        match self {
            Self::Literal(l) => *l == c,
            Self::Any => true,
            Self::Star => false,
            Self::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// Parses the set starting just after a `[` at `start`; `None` if it has no closing `]`.
///
/// A `]` right after `[` or `[!` is a member; `a-z` is a range (empty if reversed); a `-`
/// first or last is literal. Returns the token and the index after the closing `]`.
fn parse_class(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = chars.get(i) == Some(&'!');
    if negated {
        i += 1;
    }
    let body_start = i;
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    while chars.get(i).is_some_and(|&c| c != ']') {
        i += 1;
    }
    let body = chars.get(body_start..i)?;
    if i >= chars.len() {
        return None;
    }
    let mut ranges = Vec::new();
    let mut k = 0;
    while let Some(&lo) = body.get(k) {
        match (body.get(k + 1), body.get(k + 2)) {
            (Some('-'), Some(&hi)) => {
                ranges.push((lo, hi));
                k += 3;
            }
            _ => {
                ranges.push((lo, lo));
                k += 1;
            }
        }
    }
    Some((Token::Class { negated, ranges }, i + 1))
}

/// White and black lists of patterns matched against absolute file paths (BEHAVIOUR.md: Static
/// files › White and black lists).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileFilter {
    white: Vec<Pattern>,
    black: Vec<Pattern>,
}

impl FileFilter {
    /// An empty filter, which allows every file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends patterns to the black list (`blacklist`) or to the white list.
    pub fn add<I, S>(&mut self, patterns: I, blacklist: bool)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = if blacklist {
            &mut self.black
        } else {
            &mut self.white
        };
        list.extend(patterns.into_iter().map(|p| Pattern::new(p.as_ref())));
    }

    /// Appends the original's 21 default white-list patterns (common web file types).
    pub fn add_default_white_list(&mut self) {
        self.add(DEFAULT_WHITE_LIST, false);
    }

    /// Whether the file at `abs_path` may be served: the white list is empty or one of its
    /// patterns matches, and no black-list pattern matches.
    pub fn allows(&self, abs_path: &str) -> bool {
        let white_ok = self.white.is_empty() || self.white.iter().any(|p| p.matches(abs_path));
        white_ok && !self.blocks(abs_path)
    }

    /// Whether the black list alone refuses `abs_path` (a precompressed sibling is
    /// checked only against it: the file it stands for passed the white list).
    pub fn blocks(&self, abs_path: &str) -> bool {
        self.black.iter().any(|p| p.matches(abs_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Pattern::new(pattern).matches(text)
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abcd"));
        assert!(!m("abc", "ab"));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("*", ""));
        assert!(m("*", "anything/at/all"));
        assert!(m("a?c", "abc"));
        assert!(m("a?c", "a/c"));
        assert!(!m("a?c", "ac"));
        assert!(m("?", "é"));
        assert!(!m("??", "é"));
        assert!(m("*.txt", "/srv/www/a.txt"));
        assert!(m("*.txt", ".txt"));
        assert!(!m("*.txt", "/srv/www/a.txt.bak"));
        assert!(m("/srv/*/a.txt", "/srv/x/y/a.txt"));
        assert!(m("a**b", "ab"));
        assert!(m("*a*", "banana"));
        assert!(!m("*x*", "banana"));
        assert!(m("*ana", "banana"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn case_sensitive_and_special_chars_literal() {
        assert!(!m("*.TXT", "a.txt"));
        assert!(m("a\\b", "a\\b"));
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "axb"));
        assert!(m("(x)+{y}$^|", "(x)+{y}$^|"));
        assert!(m("*\n", "a\n"));
    }

    #[test]
    fn character_classes() {
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(m("[a-z]x", "qx"));
        assert!(!m("[a-z]", "Q"));
        assert!(m("[!x]", "y"));
        assert!(!m("[!x]", "x"));
        assert!(m("[!x]", "/"));
        assert!(m("[!a-c]", "d"));
        assert!(!m("[!a-c]", "b"));
        assert!(m("[a-cx-z]", "y"));
        assert!(m("*.[ch]", "main.c"));
        assert!(!m("*.[ch]", "main.o"));
        assert!(m("[é]", "é"));
    }

    #[test]
    fn class_edge_cases() {
        // `]` first is a member.
        assert!(m("[]]", "]"));
        assert!(m("[]a]", "a"));
        assert!(m("[!]]", "a"));
        assert!(!m("[!]]", "]"));
        // `-` first or last is literal.
        assert!(m("[-a]", "-"));
        assert!(m("[a-]", "-"));
        assert!(m("[a-]", "a"));
        assert!(!m("[a-]", "b"));
        // Reversed range is empty.
        assert!(!m("[z-a]", "m"));
        assert!(!m("[z-a]", "z"));
        assert!(m("[!z-a]", "m"));
        // Unmatched `[` is literal.
        assert!(m("[abc", "[abc"));
        assert!(!m("[abc", "a"));
        assert!(m("a[", "a["));
        assert!(m("[!", "[!"));
        assert!(m("[]", "[]"));
        assert!(m("[!]", "[!]"));
        assert!(m("*[", "x["));
        // Special chars inside a class are members.
        assert!(m("[*?]", "*"));
        assert!(!m("[*?]", "a"));
        assert!(m("[[]", "["));
    }

    #[test]
    fn no_exponential_backtracking() {
        let p = Pattern::new("*a*a*a*a*a*a*a*a*a*a*b");
        let text = "a".repeat(20_000);
        assert!(!p.matches(&text));
        let mut with_b = text.clone();
        with_b.push('b');
        assert!(p.matches(&with_b));
    }

    /// Obviously-correct exponential matcher over compiled tokens, for small inputs.
    fn reference(tokens: &[Token], text: &[char]) -> bool {
        match tokens.split_first() {
            None => text.is_empty(),
            Some((Token::Star, rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..])),
            Some((token, rest)) => match text.split_first() {
                Some((&c, tail)) => token.matches_char(c) && reference(rest, tail),
                None => false,
            },
        }
    }

    #[test]
    fn matcher_agrees_with_reference() {
        const PATTERN_CHARS: &[char] = &['a', 'b', '*', '?', '[', ']', '!', '-', 'é'];
        const TEXT_CHARS: &[char] = &['a', 'b', '-', ']', '[', 'é'];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % n as u64).unwrap()
        };
        for _ in 0..20_000 {
            let pattern: String = (0..next(7)).map(|_| PATTERN_CHARS[next(9)]).collect();
            let text: Vec<char> = (0..next(7)).map(|_| TEXT_CHARS[next(6)]).collect();
            let compiled = Pattern::new(&pattern);
            let text_str: String = text.iter().collect();
            assert_eq!(
                compiled.matches(&text_str),
                reference(&compiled.tokens, &text),
                "{pattern:?} vs {text_str:?}"
            );
        }
    }

    #[test]
    fn default_white_list() {
        assert_eq!(DEFAULT_WHITE_LIST.len(), 21);
        let mut f = FileFilter::new();
        f.add_default_white_list();
        for ext in [
            "css", "csv", "eot", "gif", "htm", "html", "ico", "jpeg", "jpg", "js", "json", "md",
            "otf", "pdf", "png", "svg", "tsv", "ttf", "txt", "woff", "woff2",
        ] {
            assert!(f.allows(&format!("/srv/www/file.{ext}")), "{ext}");
        }
        assert!(!f.allows("/srv/www/app.py"));
        assert!(!f.allows("/srv/www/file.HTML"));
        assert!(!f.allows("/srv/www/file.jsx"));
        assert!(!f.allows("/srv/www/noext"));
    }

    #[test]
    fn white_and_black_lists() {
        let mut f = FileFilter::new();
        assert!(f.allows("/any/thing.py"));
        f.add(["*/secret/*"], true);
        assert!(!f.allows("/srv/secret/a.txt"));
        assert!(f.allows("/srv/public/a.txt"));
        f.add(vec![String::from("*.txt")], false);
        assert!(f.allows("/srv/public/a.txt"));
        assert!(!f.allows("/srv/public/a.py"));
        // Black list wins over white list.
        assert!(!f.allows("/srv/secret/a.txt"));
    }
}
