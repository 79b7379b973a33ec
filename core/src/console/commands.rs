//! Command registration and line parsing (BEHAVIOUR.md: Command loop).

use core::fmt;

/// Completion function of a command: gets the words typed after the command name and the
/// word under the cursor, returns candidates for that word.
pub type Completer = Box<dyn Fn(&[String], &str) -> Vec<String> + Send + Sync>;

/// The console commands of a server, kept in registration order.
///
/// `H` is the handler type chosen by the embedding crate (e.g. a boxed closure); the core
/// only stores it and hands it back from [`CommandSet::parse`].
pub struct CommandSet<H> {
    pub(super) commands: Vec<Command<H>>,
}

/// One registered command.
pub(super) struct Command<H> {
    /// Name with underscores standing for the spaces typed between its words.
    pub(super) name: String,
    /// Required number of arguments; `None` accepts any number.
    pub(super) argc: Option<usize>,
    action: Action<H>,
    pub(super) completer: Option<Completer>,
}

/// What runs when a command is typed.
enum Action<H> {
    User(H),
    Builtin(Builtin),
}

/// Built-in commands the caller implements itself, as they act on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// Print [`CommandSet::help_text`].
    Help,
    /// Mark restart-on-exit and stop the server (BEHAVIOUR.md: Restart and shutdown).
    Restart,
    /// Stop the server.
    Quit,
}

impl Builtin {
    const ALL: [Self; 3] = [Self::Help, Self::Restart, Self::Quit];

    /// The name the built-in is registered under.
    pub fn name(self) -> &'static str {
        match self {
            Self::Help => "help",
            Self::Restart => "restart",
            Self::Quit => "quit",
        }
    }
}

/// What the caller must do for a typed line.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<'a, H> {
    /// Empty line or only a comment: do nothing.
    Nothing,
    /// Call the user handler with the arguments after the command name.
    Run {
        /// The handler registered for the command.
        handler: &'a H,
        /// The words after the command name.
        args: Vec<String>,
    },
    /// Perform a built-in command.
    Builtin(Builtin),
    /// Log this text (an argc mismatch or an unknown command); may span several lines.
    Message(String),
}

/// Why a command cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The name contains a space; words of a command name are separated by `_`.
    SpaceInName(String),
    /// The name is empty or contains whitespace other than a space, so it cannot be typed.
    UntypableName(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SpaceInName(name) => write!(f, "\" \" cannot be in command name {name}"),
            Self::UntypableName(name) => {
                write!(f, "command name {name:?} is empty or contains whitespace")
            }
        }
    }
}

impl std::error::Error for CommandError {}

impl<H> CommandSet<H> {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            commands: Vec::new(),
        }
    }

    /// Registers `handler` under `name` (`_` separates typed words).
    ///
    /// `argc` fixes the number of arguments (`None`: any). Registering an existing name
    /// replaces that command but keeps its place in the help list.
    ///
    /// # Errors
    /// [`CommandError`] if the name contains a space or could not be typed.
    pub fn add(
        &mut self,
        name: &str,
        argc: Option<usize>,
        handler: H,
        completer: Option<Completer>,
    ) -> Result<(), CommandError> {
        if name.contains(' ') {
            return Err(CommandError::SpaceInName(name.to_owned()));
        }
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(CommandError::UntypableName(name.to_owned()));
        }
        self.insert(Command {
            name: name.to_owned(),
            argc,
            action: Action::User(handler),
            completer,
        });
        Ok(())
    }

    /// Registers `help`, `restart` and `quit` (no arguments) unless a command of that
    /// name exists already: user commands win.
    pub fn add_builtins(&mut self) {
        for builtin in Builtin::ALL {
            if !self.contains(builtin.name()) {
                self.insert(Command {
                    name: builtin.name().to_owned(),
                    argc: Some(0),
                    action: Action::Builtin(builtin),
                    completer: None,
                });
            }
        }
    }

    /// Whether a command is registered under `name` (underscore form).
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Interprets one input line (BEHAVIOUR.md: Command loop).
    pub fn parse(&self, line: &str) -> Outcome<'_, H> {
        let words = command_words(line);
        if words.is_empty() {
            return Outcome::Nothing;
        }
        for split in (1..=words.len().min(self.max_name_words())).rev() {
            let (name_words, arg_words) = words.split_at(split);
            let Some(command) = self.find(&name_words.join("_")) else {
                continue;
            };
            if let Some(argc) = command.argc {
                if argc != arg_words.len() {
                    return Outcome::Message(format!(
                        "command {} expects {argc} argument(s), got {}",
                        name_words.join(" "),
                        arg_words.len()
                    ));
                }
            }
            return match &command.action {
                Action::User(handler) => Outcome::Run {
                    handler,
                    args: arg_words.iter().map(|word| (*word).to_owned()).collect(),
                },
                Action::Builtin(builtin) => Outcome::Builtin(*builtin),
            };
        }
        let typed = words.join(" ");
        let next = self.next_words(&words);
        if next.is_empty() {
            return Outcome::Message(format!(
                "command \"{typed}\" invalid; type help or use <TAB> for a list of commands"
            ));
        }
        let mut text = format!("command \"{typed}\" needs more arguments:");
        for word in next {
            text.push_str("\n    ");
            text.push_str(word);
        }
        Outcome::Message(text)
    }

    /// The text of the `help` command: every command, in registration order.
    pub fn help_text(&self) -> String {
        let mut text = String::from("available commands:");
        for command in &self.commands {
            text.push_str("\n    ");
            text.push_str(&command.name.replace('_', " "));
        }
        text
    }

    /// Distinct words that follow `words` in longer command names, in registration order.
    fn next_words(&self, words: &[&str]) -> Vec<&str> {
        let prefix = format!("{}_", words.join("_"));
        let mut next: Vec<&str> = Vec::new();
        for command in &self.commands {
            let Some(rest) = command.name.strip_prefix(&prefix) else {
                continue;
            };
            let word = rest.split('_').next().unwrap_or(rest);
            if !word.is_empty() && !next.contains(&word) {
                next.push(word);
            }
        }
        next
    }

    /// The most typed words a command name can take; bounds the prefix search so a long
    /// line costs linear time.
    pub(super) fn max_name_words(&self) -> usize {
        self.commands
            .iter()
            .map(|command| command.name.split('_').count())
            .max()
            .unwrap_or(0)
    }

    pub(super) fn find(&self, name: &str) -> Option<&Command<H>> {
        self.commands.iter().find(|command| command.name == name)
    }

    fn insert(&mut self, command: Command<H>) {
        match self.commands.iter_mut().find(|c| c.name == command.name) {
            Some(existing) => *existing = command,
            None => self.commands.push(command),
        }
    }
}

impl<H> Default for CommandSet<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H> fmt::Debug for CommandSet<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.commands.iter().map(|command| &command.name))
            .finish()
    }
}

/// The words of a line up to the first one starting with `#` (a comment).
pub(super) fn command_words(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .take_while(|word| !word.starts_with('#'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handlers are plain ids in tests.
    fn set() -> CommandSet<u32> {
        let mut set = CommandSet::new();
        set.add("requests", Some(1), 1, None).unwrap();
        set.add("hello_world", None, 2, None).unwrap();
        set.add("hello_there_x", Some(0), 3, None).unwrap();
        set.add_builtins();
        set
    }

    fn run<'a>(handler: &'a u32, args: &[&str]) -> Outcome<'a, u32> {
        Outcome::Run {
            handler,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn verified_examples() {
        let set = set();
        assert_eq!(
            set.parse("requests"),
            Outcome::Message("command requests expects 1 argument(s), got 0".into())
        );
        assert_eq!(set.parse("requests uptime"), run(&1, &["uptime"]));
        assert_eq!(
            set.parse("foo bar"),
            Outcome::Message(
                "command \"foo bar\" invalid; type help or use <TAB> for a list of commands".into()
            )
        );
        assert_eq!(
            set.parse("hello"),
            Outcome::Message(
                "command \"hello\" needs more arguments:\n    world\n    there".into()
            )
        );
    }

    #[test]
    fn longest_prefix_wins_and_rest_are_args() {
        let mut set = set();
        set.add("hello", None, 4, None).unwrap();
        assert_eq!(set.parse("hello world a b"), run(&2, &["a", "b"]));
        assert_eq!(set.parse("hello there"), run(&4, &["there"]));
        assert_eq!(set.parse("hello there x"), run(&3, &[]));
        assert_eq!(
            set.parse("hello there x y"),
            Outcome::Message("command hello there x expects 0 argument(s), got 1".into())
        );
        assert_eq!(set.parse("hello"), run(&4, &[]));
    }

    #[test]
    fn underscore_typed_directly_also_matches() {
        let set = set();
        assert_eq!(set.parse("hello_world"), run(&2, &[]));
    }

    #[test]
    fn needs_more_arguments_deeper_and_deduplicated() {
        let mut set = set();
        set.add("hello_there_y", None, 5, None).unwrap();
        assert_eq!(
            set.parse("hello there"),
            Outcome::Message("command \"hello there\" needs more arguments:\n    x\n    y".into())
        );
        set.add("hello_world_z", None, 6, None).unwrap();
        assert_eq!(
            set.parse("hello"),
            Outcome::Message(
                "command \"hello\" needs more arguments:\n    world\n    there".into()
            )
        );
    }

    #[test]
    fn comments_and_blank_lines() {
        let set = set();
        assert_eq!(set.parse(""), Outcome::Nothing);
        assert_eq!(set.parse("   \t \r\n"), Outcome::Nothing);
        assert_eq!(set.parse("# requests"), Outcome::Nothing);
        assert_eq!(set.parse("  #"), Outcome::Nothing);
        assert_eq!(set.parse("requests up # comment"), run(&1, &["up"]));
        assert_eq!(set.parse("requests up #comment x y"), run(&1, &["up"]));
        // `#` inside a word is not a comment.
        assert_eq!(set.parse("requests a#b"), run(&1, &["a#b"]));
        assert_eq!(
            set.parse("foo  \t bar # baz"),
            Outcome::Message(
                "command \"foo bar\" invalid; type help or use <TAB> for a list of commands".into()
            )
        );
    }

    #[test]
    fn builtins() {
        let set = set();
        assert_eq!(set.parse(" help "), Outcome::Builtin(Builtin::Help));
        assert_eq!(set.parse("restart"), Outcome::Builtin(Builtin::Restart));
        assert_eq!(set.parse("quit"), Outcome::Builtin(Builtin::Quit));
        assert_eq!(
            set.parse("quit now"),
            Outcome::Message("command quit expects 0 argument(s), got 1".into())
        );
    }

    #[test]
    fn user_commands_win_over_builtins() {
        let mut set = CommandSet::new();
        set.add("quit", None, 9, None).unwrap();
        set.add_builtins();
        set.add_builtins();
        assert_eq!(set.parse("quit a"), run(&9, &["a"]));
        assert_eq!(
            set.help_text(),
            "available commands:\n    quit\n    help\n    restart"
        );
    }

    #[test]
    fn help_lists_registration_order_with_spaces() {
        let set = set();
        assert_eq!(
            set.help_text(),
            "available commands:\n    requests\n    hello world\n    hello there x\n    \
             help\n    restart\n    quit"
        );
        assert_eq!(CommandSet::<u32>::new().help_text(), "available commands:");
    }

    #[test]
    fn replacing_keeps_position() {
        let mut set = set();
        set.add("requests", None, 7, None).unwrap();
        assert_eq!(set.parse("requests"), run(&7, &[]));
        assert!(set
            .help_text()
            .starts_with("available commands:\n    requests\n"));
    }

    #[test]
    fn invalid_names() {
        let mut set: CommandSet<u32> = CommandSet::new();
        let err = set.add("cache clear", None, 1, None).unwrap_err();
        assert_eq!(err, CommandError::SpaceInName("cache clear".into()));
        assert_eq!(
            err.to_string(),
            "\" \" cannot be in command name cache clear"
        );
        assert_eq!(
            set.add("", None, 1, None).unwrap_err(),
            CommandError::UntypableName(String::new())
        );
        assert_eq!(
            set.add("a\tb", None, 1, None).unwrap_err(),
            CommandError::UntypableName("a\tb".into())
        );
        assert!(set.commands.is_empty());
    }

    #[test]
    fn hostile_lines_do_not_panic() {
        let set = set();
        let long = "x ".repeat(10_000);
        assert!(matches!(set.parse(&long), Outcome::Message(_)));
        assert!(matches!(set.parse("\u{0}\u{7f} é ✓"), Outcome::Message(_)));
        assert!(matches!(set.parse("_ __ _"), Outcome::Message(_)));
    }
}
