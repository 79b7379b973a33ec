//! A minimal line editor for a raw-mode terminal, as pure logic: bytes in, screen updates
//! out. Left/right, home/end, backspace/delete, Ctrl-U, up/down through the history,
//! TAB completion, Enter, and Ctrl-D on an empty line for end of input.

/// Most history entries kept (oldest dropped first).
pub(super) const HISTORY_MAX: usize = 1000;
/// Longest line accepted, in characters; further typing is ignored.
const LINE_MAX: usize = 4096;

/// What a fed byte completed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// The user pressed Enter on this line.
    Line(String),
    /// Ctrl-D on an empty line: end of input.
    Eof,
}

/// A key decoded from the input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Char(char),
    Enter,
    Backspace,
    Delete,
    CtrlD,
    KillLine,
    Left,
    Right,
    Up,
    Down,
    Home,
    End,
    Tab,
}

/// Where the decoder is within an escape sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Esc,
    /// After `ESC [` (CSI), with the parameter bytes so far.
    Csi(Vec<u8>),
    /// After `ESC O` (SS3).
    Ss3,
}

/// The line being edited, the history and the input decoder state.
#[derive(Debug)]
pub(super) struct Editor {
    prompt: String,
    line: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    /// Index of the history entry shown; `history.len()` for the line being typed.
    browse: usize,
    /// The typed line, kept while browsing the history.
    draft: Vec<char>,
    /// An incomplete UTF-8 sequence.
    utf8: Vec<u8>,
    escape: Escape,
}

impl Editor {
    /// An editor showing `prompt`, with `history` (oldest first) for the up/down keys.
    pub(super) fn new(prompt: &str, mut history: Vec<String>) -> Self {
        let excess = history.len().saturating_sub(HISTORY_MAX);
        history.drain(..excess);
        Self {
            prompt: prompt.to_owned(),
            line: Vec::new(),
            cursor: 0,
            browse: history.len(),
            history,
            draft: Vec::new(),
            utf8: Vec::new(),
            escape: Escape::None,
        }
    }

    /// The history, oldest first, to save.
    pub(super) fn history(&self) -> &[String] {
        &self.history
    }

    /// Processes one input byte; appends terminal output to `out`. `complete` gives the
    /// candidates for the text before the cursor (see `CommandSet::complete`).
    pub(super) fn feed(
        &mut self,
        byte: u8,
        complete: &dyn Fn(&str) -> Vec<String>,
        out: &mut String,
    ) -> Option<Event> {
        let key = self.decode(byte)?;
        self.apply(key, complete, out)
    }

    /// Turns bytes into keys; `None` while a sequence is incomplete or for ignored input.
    fn decode(&mut self, byte: u8) -> Option<Key> {
        match std::mem::replace(&mut self.escape, Escape::None) {
            Escape::Esc => {
                self.escape = match byte {
                    b'[' => Escape::Csi(Vec::new()),
                    b'O' => Escape::Ss3,
                    _ => Escape::None,
                };
                return None;
            }
            Escape::Ss3 => return arrow(byte),
            Escape::Csi(mut params) => {
                if (0x40..=0x7e).contains(&byte) {
                    return match (params.as_slice(), byte) {
                        (b"3", b'~') => Some(Key::Delete),
                        (b"1" | b"7", b'~') => Some(Key::Home),
                        (b"4" | b"8", b'~') => Some(Key::End),
                        (_, final_byte) => arrow(final_byte),
                    };
                }
                // Bound the parameters of a sequence we do not know.
                if params.len() < 16 {
                    params.push(byte);
                }
                self.escape = Escape::Csi(params);
                return None;
            }
            Escape::None => {}
        }
        match byte {
            0x1b => {
                self.escape = Escape::Esc;
                None
            }
            b'\r' | b'\n' => Some(Key::Enter),
            0x7f | 0x08 => Some(Key::Backspace),
            b'\t' => Some(Key::Tab),
            0x01 => Some(Key::Home),
            0x05 => Some(Key::End),
            0x02 => Some(Key::Left),
            0x06 => Some(Key::Right),
            0x10 => Some(Key::Up),
            0x0e => Some(Key::Down),
            0x04 => Some(Key::CtrlD),
            0x15 => Some(Key::KillLine),
            0x00..=0x1f => None,
            _ => self.decode_utf8(byte),
        }
    }

    /// Collects the bytes of one UTF-8 character; invalid sequences are dropped.
    fn decode_utf8(&mut self, byte: u8) -> Option<Key> {
        self.utf8.push(byte);
        match std::str::from_utf8(&self.utf8) {
            Ok(text) => {
                let key = text.chars().next().map(Key::Char);
                self.utf8.clear();
                key
            }
            Err(e) if e.error_len().is_none() && self.utf8.len() < 4 => None,
            Err(_) => {
                self.utf8.clear();
                None
            }
        }
    }

    fn apply(
        &mut self,
        key: Key,
        complete: &dyn Fn(&str) -> Vec<String>,
        out: &mut String,
    ) -> Option<Event> {
        match key {
            Key::Char(c) => {
                if self.line.len() < LINE_MAX && !c.is_control() {
                    self.line.insert(self.cursor, c);
                    self.cursor += 1;
                }
            }
            Key::Enter => {
                out.push('\n');
                return Some(Event::Line(self.finish_line()));
            }
            Key::CtrlD if self.line.is_empty() => {
                out.push('\n');
                return Some(Event::Eof);
            }
            Key::CtrlD | Key::Delete => {
                if self.cursor < self.line.len() {
                    self.line.remove(self.cursor);
                }
            }
            Key::Backspace => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.line.remove(self.cursor);
                }
            }
            Key::KillLine => {
                self.line.drain(..self.cursor);
                self.cursor = 0;
            }
            Key::Left => self.cursor = self.cursor.saturating_sub(1),
            Key::Right => self.cursor = (self.cursor + 1).min(self.line.len()),
            Key::Home => self.cursor = 0,
            Key::End => self.cursor = self.line.len(),
            Key::Up => self.browse_to(self.browse.checked_sub(1)),
            Key::Down => self.browse_to(Some(self.browse + 1)),
            Key::Tab => self.complete(complete, out),
        }
        self.redraw(out);
        None
    }

    /// Ends the line: returns it and records it in the history (not blank, not a repeat).
    fn finish_line(&mut self) -> String {
        let text: String = self.line.drain(..).collect();
        self.cursor = 0;
        self.draft.clear();
        if !text.trim().is_empty() && self.history.last() != Some(&text) {
            if self.history.len() >= HISTORY_MAX {
                self.history.remove(0);
            }
            self.history.push(text.clone());
        }
        self.browse = self.history.len();
        text
    }

    /// Shows history entry `index` (or the draft past the end); out of range does nothing.
    fn browse_to(&mut self, index: Option<usize>) {
        let Some(index) = index.filter(|i| *i <= self.history.len()) else {
            return;
        };
        if self.browse == self.history.len() {
            self.draft = self.line.clone();
        }
        self.line = match self.history.get(index) {
            Some(entry) => entry.chars().collect(),
            None => self.draft.clone(),
        };
        self.browse = index;
        self.cursor = self.line.len();
    }

    /// Replaces the word before the cursor with the only candidate or the candidates'
    /// common prefix; lists the candidates when that adds nothing.
    fn complete(&mut self, complete: &dyn Fn(&str) -> Vec<String>, out: &mut String) {
        let before: String = self.line.iter().take(self.cursor).collect();
        let candidates = complete(&before);
        let start = self
            .line
            .iter()
            .take(self.cursor)
            .rposition(|c| c.is_whitespace())
            .map_or(0, |i| i + 1);
        let word: String = self
            .line
            .iter()
            .skip(start)
            .take(self.cursor - start)
            .collect();
        let replacement = match candidates.as_slice() {
            [] => {
                out.push('\x07');
                return;
            }
            [only] => only.clone(),
            [first, rest @ ..] => rest
                .iter()
                .fold(first.clone(), |prefix, c| common_prefix(&prefix, c)),
        };
        if replacement.chars().count() > word.chars().count() || candidates.len() == 1 {
            let inserted: Vec<char> = replacement.chars().collect();
            let after = self.line.split_off(self.cursor);
            self.line.truncate(start);
            self.line.extend(&inserted);
            self.cursor = self.line.len();
            self.line.extend(after);
            self.line.truncate(LINE_MAX);
            self.cursor = self.cursor.min(self.line.len());
        } else {
            out.push('\n');
            out.push_str(&candidates.join("  "));
            out.push('\n');
        }
    }

    /// Rewrites the prompt and line, then puts the cursor back in place.
    fn redraw(&self, out: &mut String) {
        out.push('\r');
        out.push_str(&self.prompt);
        out.extend(self.line.iter());
        out.push_str("\x1b[K");
        let back = self.line.len() - self.cursor;
        if back > 0 {
            out.push_str(&format!("\x1b[{back}D"));
        }
    }
}

/// The key of an arrow/home/end final byte (`ESC [ A`, `ESC O H`, …).
fn arrow(byte: u8) -> Option<Key> {
    match byte {
        b'A' => Some(Key::Up),
        b'B' => Some(Key::Down),
        b'C' => Some(Key::Right),
        b'D' => Some(Key::Left),
        b'H' => Some(Key::Home),
        b'F' => Some(Key::End),
        _ => None,
    }
}

fn common_prefix(a: &str, b: &str) -> String {
    a.chars()
        .zip(b.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(line: &str) -> Vec<String> {
        let words = ["requests ", "restart", "quit", "help"];
        if let Some(arg) = line.strip_prefix("requests ") {
            return ["uptime", "users"]
                .iter()
                .filter(|w| w.starts_with(arg))
                .map(|w| (*w).to_owned())
                .collect();
        }
        words
            .iter()
            .filter(|w| w.starts_with(line))
            .map(|w| (*w).to_owned())
            .collect()
    }

    /// Feeds `input`, returning the events and the last line state.
    fn type_in(editor: &mut Editor, input: &[u8]) -> (Vec<Event>, String) {
        let mut out = String::new();
        let events = input
            .iter()
            .filter_map(|b| editor.feed(*b, &candidates, &mut out))
            .collect();
        (events, out)
    }

    fn line(editor: &Editor) -> String {
        editor.line.iter().collect()
    }

    #[test]
    fn typing_and_enter() {
        let mut e = Editor::new("> ", Vec::new());
        let (events, out) = type_in(&mut e, b"help\r");
        assert_eq!(events, [Event::Line("help".into())]);
        assert!(out.starts_with("\r> h\x1b[K"));
        assert!(out.ends_with('\n'));
        assert_eq!(e.history(), ["help"]);
    }

    #[test]
    fn cursor_movement_and_editing() {
        let mut e = Editor::new("> ", Vec::new());
        type_in(&mut e, b"qxit");
        type_in(&mut e, b"\x1b[D\x1b[D\x1b[D");
        assert_eq!(e.cursor, 1);
        type_in(&mut e, b"\x1b[3~u");
        assert_eq!(line(&e), "quit");
        type_in(&mut e, b"\x1b[C\x7f\x7f\x7fa");
        assert_eq!(line(&e), "at");
        type_in(&mut e, b"\x01>\x05<");
        assert_eq!(line(&e), ">at<");
        type_in(&mut e, b"\x1b[D\x15");
        assert_eq!((line(&e), e.cursor), ("<".to_owned(), 0));
        let mut out = String::new();
        e.redraw(&mut out);
        assert_eq!(out, "\r> <\x1b[K\x1b[1D");
    }

    #[test]
    fn history_up_and_down_keep_the_draft() {
        let mut e = Editor::new("> ", vec!["one".into(), "two".into()]);
        type_in(&mut e, b"dr");
        type_in(&mut e, b"\x1b[A");
        assert_eq!(line(&e), "two");
        type_in(&mut e, b"\x1bOA\x1b[A");
        assert_eq!(line(&e), "one");
        type_in(&mut e, b"\x1b[B\x1b[B");
        assert_eq!(line(&e), "dr");
        type_in(&mut e, b"\x1b[B");
        assert_eq!(line(&e), "dr");
        let (events, _) = type_in(&mut e, b"\x10\r\x10\r");
        assert_eq!(
            events,
            [Event::Line("two".into()), Event::Line("two".into())]
        );
        assert_eq!(e.history(), ["one", "two"]);
    }

    #[test]
    fn history_is_bounded_and_skips_blank_lines() {
        let many: Vec<String> = (0..HISTORY_MAX + 5).map(|i| i.to_string()).collect();
        let mut e = Editor::new("> ", many);
        assert_eq!(e.history().len(), HISTORY_MAX);
        assert_eq!(e.history().first().map(String::as_str), Some("5"));
        type_in(&mut e, b"   \rnew\r");
        assert_eq!(e.history().len(), HISTORY_MAX);
        assert_eq!(e.history().last().map(String::as_str), Some("new"));
    }

    #[test]
    fn tab_completes_a_single_candidate_with_its_space() {
        let mut e = Editor::new("> ", Vec::new());
        type_in(&mut e, b"req\t");
        assert_eq!(line(&e), "requests ");
        type_in(&mut e, b"up\t");
        assert_eq!(line(&e), "requests uptime");
    }

    #[test]
    fn tab_extends_the_common_prefix_then_lists() {
        let mut e = Editor::new("> ", Vec::new());
        type_in(&mut e, b"re\t");
        assert_eq!(line(&e), "re");
        let (_, out) = type_in(&mut e, b"\t");
        assert!(out.contains("\nrequests   restart\n"), "{out:?}");
        let mut e = Editor::new("> ", Vec::new());
        type_in(&mut e, b"requests u\t");
        assert_eq!(line(&e), "requests u");
        let (_, out) = type_in(&mut e, b"x\t");
        assert!(out.contains('\x07'));
    }

    #[test]
    fn tab_in_the_middle_keeps_the_rest() {
        let mut e = Editor::new("> ", Vec::new());
        type_in(&mut e, b"qu xyz\x1b[D\x1b[D\x1b[D\x1b[D\t");
        assert_eq!(line(&e), "quit xyz");
        assert_eq!(e.cursor, 4);
    }

    #[test]
    fn ctrl_d_ends_input_only_on_an_empty_line() {
        let mut e = Editor::new("> ", Vec::new());
        let (events, _) = type_in(&mut e, b"ab\x01\x04");
        assert!(events.is_empty());
        assert_eq!(line(&e), "b");
        let (events, _) = type_in(&mut e, b"\x04\x04");
        assert_eq!(events, [Event::Eof]);
    }

    #[test]
    fn utf8_and_hostile_bytes() {
        let mut e = Editor::new("> ", Vec::new());
        type_in(&mut e, "é✓".as_bytes());
        assert_eq!(line(&e), "é✓");
        // Invalid UTF-8, stray controls, C1 and unknown escapes leave nothing behind.
        type_in(
            &mut e,
            b"\xff\xc3\x28\x07\x1b[99;99;99Z\x1b[12345678901234567890~\x1bx",
        );
        assert_eq!(line(&e), "é✓");
        type_in(&mut e, "\u{9b}".as_bytes());
        assert_eq!(line(&e), "é✓");
        let long = vec![b'a'; LINE_MAX + 10];
        type_in(&mut e, &long);
        assert_eq!(e.line.len(), LINE_MAX);
    }
}
