//! TAB completion of command names and arguments (BEHAVIOUR.md: Command loop).

use super::commands::{command_words, CommandSet};

impl<H> CommandSet<H> {
    /// Candidates replacing the word under the cursor, given the line up to the cursor.
    ///
    /// Merges the next word of every command name matching the typed words with the
    /// results of the completers of commands the line starts with; sorted, without
    /// duplicates. A single candidate that completes a command taking arguments gets a
    /// trailing space, so the user can type the first argument at once.
    pub fn complete(&self, line_before_cursor: &str) -> Vec<String> {
        let before = line_before_cursor.trim_end_matches(|c: char| !c.is_whitespace());
        let current = line_before_cursor.strip_prefix(before).unwrap_or_default();
        let words = command_words(before);
        let in_comment = words.len() != before.split_whitespace().count();
        if in_comment || current.starts_with('#') {
            return Vec::new();
        }

        let mut candidates = self.name_candidates(&words, current);
        for split in 1..=words.len().min(self.max_name_words()) {
            let (name_words, arg_words) = words.split_at(split);
            let Some(completer) = self
                .find(&name_words.join("_"))
                .and_then(|command| command.completer.as_ref())
            else {
                continue;
            };
            let args: Vec<String> = arg_words.iter().map(|word| (*word).to_owned()).collect();
            candidates.extend(completer(&args, current));
        }
        candidates.sort_unstable();
        candidates.dedup();

        if let [single] = candidates.as_mut_slice() {
            let mut name = words.join("_");
            if !name.is_empty() {
                name.push('_');
            }
            name.push_str(single);
            if self
                .find(&name)
                .is_some_and(|command| command.argc != Some(0))
            {
                single.push(' ');
            }
        }
        candidates
    }

    /// The word following `words` in every command name that continues with `current`.
    fn name_candidates(&self, words: &[&str], current: &str) -> Vec<String> {
        let mut typed = words.join("_");
        if !typed.is_empty() {
            typed.push('_');
        }
        typed.push_str(current);
        self.commands
            .iter()
            .filter_map(|command| command.name.strip_prefix(typed.as_str()))
            .map(|rest| {
                let end = rest.find('_').unwrap_or(rest.len());
                let mut word = current.to_owned();
                word.push_str(rest.get(..end).unwrap_or(rest));
                word
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::commands::Completer;
    use super::*;

    fn uptime_completer() -> Completer {
        Box::new(|args: &[String], text: &str| {
            if !args.is_empty() {
                return Vec::new();
            }
            ["uptime", "users", "all"]
                .iter()
                .filter(|word| word.starts_with(text))
                .map(|word| (*word).to_owned())
                .collect()
        })
    }

    fn set() -> CommandSet<()> {
        let mut set = CommandSet::new();
        set.add("requests", Some(1), (), Some(uptime_completer()))
            .unwrap();
        set.add("hello_world", None, (), None).unwrap();
        set.add("hello_there_x", Some(0), (), None).unwrap();
        set.add_builtins();
        set
    }

    #[test]
    fn command_name_gets_space_when_it_takes_arguments() {
        assert_eq!(set().complete("req"), ["requests "]);
        assert_eq!(set().complete("  req"), ["requests "]);
        assert_eq!(set().complete("requests"), ["requests "]);
    }

    #[test]
    fn command_without_arguments_gets_no_space() {
        assert_eq!(set().complete("qu"), ["quit"]);
        assert_eq!(set().complete("hello there "), ["x"]);
    }

    #[test]
    fn completer_supplies_arguments() {
        assert_eq!(set().complete("requests u"), ["uptime", "users"]);
        assert_eq!(set().complete("requests up"), ["uptime"]);
        assert_eq!(set().complete("requests "), ["all", "uptime", "users"]);
        assert!(set().complete("requests uptime x").is_empty());
    }

    #[test]
    fn next_word_of_multi_word_commands() {
        assert_eq!(set().complete("hello t"), ["there"]);
        assert_eq!(set().complete("hello "), ["there", "world"]);
        assert_eq!(set().complete("hello w"), ["world "]);
        assert_eq!(set().complete("he"), ["hello", "help"]);
        assert!(set().complete("hello x").is_empty());
    }

    #[test]
    fn underscores_typed_directly() {
        assert_eq!(set().complete("hello_w"), ["hello_world "]);
        assert_eq!(set().complete("hello_t"), ["hello_there"]);
    }

    #[test]
    fn empty_line_lists_first_words() {
        assert_eq!(
            set().complete(""),
            ["hello", "help", "quit", "requests", "restart"]
        );
    }

    #[test]
    fn merged_sorted_and_deduplicated() {
        let mut set = set();
        set.add(
            "hello",
            None,
            (),
            Some(Box::new(|_: &[String], _: &str| {
                vec!["world".to_owned(), "zeta".to_owned(), "alpha".to_owned()]
            })),
        )
        .unwrap();
        assert_eq!(set.complete("hello "), ["alpha", "there", "world", "zeta"]);
    }

    #[test]
    fn completer_gets_arguments_after_its_command() {
        let mut set: CommandSet<()> = CommandSet::new();
        set.add(
            "a",
            None,
            (),
            Some(Box::new(|args: &[String], text: &str| {
                vec![format!("{}|{text}", args.join(","))]
            })),
        )
        .unwrap();
        assert_eq!(set.complete("a x y z"), ["x,y|z"]);
        assert_eq!(set.complete("a "), ["|"]);
    }

    #[test]
    fn comments_complete_nothing() {
        assert!(set().complete("#").is_empty());
        assert!(set().complete("# re").is_empty());
        assert!(set().complete("requests # u").is_empty());
    }

    #[test]
    fn hostile_input() {
        assert!(set().complete("\u{0}é✓ \u{7f}").is_empty());
        assert!(set().complete(&"é ".repeat(1000)).is_empty());
        assert!(set().complete("__").is_empty());
    }
}
