//! The command loop (BEHAVIOUR.md: Command loop): user commands registered with
//! [`QuickServer::cmd`], the built-ins `help`, `restart` and `quit`, read from stdin on a thread of
//! their own.
//!
//! Parsing, help and completion are the core's [`CommandSet`]; this module reads lines and
//! runs what they name. On a terminal a small line editor gives TAB completion and history
//! (kept in `.cmd_history`); on a pipe lines are read plainly. The editor is written here
//! over `termios` rather than taken from a crate such as `rustyline`: it needs a handful
//! of keys, and the loop must read stdin one byte at a time with a timeout (so it stops
//! promptly and never swallows input meant for the process after a restart), which
//! line-editing crates do not offer.

mod editor;
mod terminal;

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use quick_server_core::console::{Builtin, CommandSet, Outcome};

use self::editor::{Editor, Event};
use self::terminal::{read_byte, Input, RawMode, STDIN};
use crate::logging::msg;
use crate::restart::Control;

/// How often the reading thread checks whether the server stopped.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// Longest line read from a pipe; the rest of a longer line is dropped.
const PIPE_LINE_MAX: usize = 64 * 1024;

/// A command's code: gets the words typed after the command name.
type CommandFn = Box<dyn Fn(&[String]) + Send + Sync>;

/// The console settings and commands of one server.
pub(crate) struct Console {
    pub(crate) commands: CommandSet<CommandFn>,
    pub(crate) no_command_loop: bool,
    pub(crate) prompt: String,
    pub(crate) history_file: PathBuf,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            commands: CommandSet::new(),
            no_command_loop: false,
            prompt: "> ".to_owned(),
            history_file: PathBuf::from(".cmd_history"),
        }
    }
}

impl Console {
    /// Adds the built-ins and starts reading commands, unless the loop is turned off.
    pub(crate) fn start(mut self, control: Arc<Control>) -> io::Result<Option<JoinHandle<()>>> {
        if self.no_command_loop {
            return Ok(None);
        }
        self.commands.add_builtins();
        std::thread::Builder::new()
            .name("quick-server-console".into())
            .spawn(move || self.run(&control))
            .map(Some)
    }

    /// Reads and runs commands until the server stops or stdin ends.
    fn run(self, control: &Control) {
        let terminal = io::stdin().is_terminal() && io::stdout().is_terminal();
        let raw = if terminal {
            RawMode::enable(STDIN).ok()
        } else {
            None
        };
        let ended = match raw {
            Some(_) => self.read_terminal(control),
            None => self.read_pipe(control),
        };
        drop(raw);
        if ended == Ended::Eof {
            msg("no command loop - use CTRL-C to terminate");
        }
    }

    /// Plain line reading: prompt, line, run, until a stop or the end of input.
    fn read_pipe(&self, control: &Control) -> Ended {
        let mut line = Vec::new();
        self.show_prompt();
        loop {
            if control.is_stopping() {
                return Ended::Stopped;
            }
            match read_byte(STDIN, STOP_CHECK) {
                Ok(Input::Idle) => {}
                Ok(Input::Byte(b'\n')) => {
                    self.run_line(&String::from_utf8_lossy(&line), control);
                    line.clear();
                    if control.is_stopping() {
                        return Ended::Stopped;
                    }
                    self.show_prompt();
                }
                Ok(Input::Byte(byte)) => {
                    if line.len() < PIPE_LINE_MAX {
                        line.push(byte);
                    }
                }
                Ok(Input::Eof) | Err(_) => {
                    if !line.is_empty() {
                        self.run_line(&String::from_utf8_lossy(&line), control);
                    }
                    return Ended::Eof;
                }
            }
        }
    }

    /// Line editing on a raw-mode terminal, with the history file loaded and saved.
    fn read_terminal(&self, control: &Control) -> Ended {
        let history = fs::read_to_string(&self.history_file)
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        let mut editor = Editor::new(&self.prompt, history);
        let complete = |before: &str| self.commands.complete(before);
        self.show_prompt();
        let ended = loop {
            if control.is_stopping() {
                break Ended::Stopped;
            }
            let byte = match read_byte(STDIN, STOP_CHECK) {
                Ok(Input::Idle) => continue,
                Ok(Input::Byte(byte)) => byte,
                Ok(Input::Eof) | Err(_) => break Ended::Eof,
            };
            let mut screen = String::new();
            let event = editor.feed(byte, &complete, &mut screen);
            write_stdout(&screen);
            match event {
                Some(Event::Line(line)) => {
                    self.run_line(&line, control);
                    if control.is_stopping() {
                        break Ended::Stopped;
                    }
                    self.show_prompt();
                }
                Some(Event::Eof) => break Ended::Eof,
                None => {}
            }
        };
        let mut text = editor.history().join("\n");
        text.push('\n');
        // Like the original, a history that cannot be written is not worth an error.
        let _ = fs::write(&self.history_file, text);
        ended
    }

    fn show_prompt(&self) {
        write_stdout(&self.prompt);
    }

    /// Runs one line and logs what it has to say.
    fn run_line(&self, line: &str, control: &Control) {
        if let Some(text) = execute(&self.commands, line, control) {
            msg(&text);
        }
    }
}

/// Why reading commands ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The server is stopping.
    Stopped,
    /// Stdin ended (or cannot be read); the server keeps running.
    Eof,
}

/// Runs the command `line` names; returns the text to log (help, a usage message, or the
/// error of a command that panicked).
fn execute(commands: &CommandSet<CommandFn>, line: &str, control: &Control) -> Option<String> {
    let line = line.trim_end_matches('\r');
    match commands.parse(line) {
        Outcome::Nothing => None,
        Outcome::Message(text) => Some(text),
        Outcome::Builtin(Builtin::Help) => Some(commands.help_text()),
        Outcome::Builtin(Builtin::Quit) => {
            control.quit();
            None
        }
        Outcome::Builtin(Builtin::Restart) => {
            control.restart();
            None
        }
        Outcome::Run { handler, args } => {
            // The panic hook has printed the message and location already.
            panic::catch_unwind(AssertUnwindSafe(|| handler(&args)))
                .err()
                .map(|_| format!("ERROR in err_command: exception executing command {line}"))
        }
    }
}

fn write_stdout(text: &str) {
    if text.is_empty() {
        return;
    }
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    fn commands(seen: Arc<Mutex<Vec<Vec<String>>>>) -> CommandSet<CommandFn> {
        let mut set: CommandSet<CommandFn> = CommandSet::new();
        let handler: CommandFn = Box::new(move |args: &[String]| {
            seen.lock().unwrap().push(args.to_vec());
        });
        set.add("requests", Some(1), handler, None).unwrap();
        let boom: CommandFn = Box::new(|_: &[String]| panic!("boom"));
        set.add("boom", None, boom, None).unwrap();
        set.add_builtins();
        set
    }

    fn control() -> (Arc<Control>, Arc<AtomicUsize>) {
        let stops = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&stops);
        let control = Control::new(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
            },
            None,
        );
        (control, stops)
    }

    #[test]
    fn help_and_messages() {
        let set = commands(Arc::default());
        let (control, _) = control();
        assert_eq!(
            execute(&set, "help", &control).as_deref(),
            Some("available commands:\n    requests\n    boom\n    help\n    restart\n    quit")
        );
        assert_eq!(
            execute(&set, "requests\r", &control).as_deref(),
            Some("command requests expects 1 argument(s), got 0")
        );
        assert_eq!(
            execute(&set, "foo bar", &control).as_deref(),
            Some("command \"foo bar\" invalid; type help or use <TAB> for a list of commands")
        );
        assert_eq!(execute(&set, "  # nothing", &control), None);
    }

    #[test]
    fn user_command_gets_its_arguments() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let set = commands(Arc::clone(&seen));
        let (control, stops) = control();
        assert_eq!(execute(&set, "requests uptime", &control), None);
        assert_eq!(*seen.lock().unwrap(), [vec!["uptime".to_owned()]]);
        assert_eq!(stops.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn quit_and_restart_stop_the_server() {
        let set = commands(Arc::default());
        let (quit, stops) = control();
        assert_eq!(execute(&set, "quit", &quit), None);
        assert!(quit.is_stopping() && !quit.restart_requested());
        assert_eq!(stops.load(Ordering::SeqCst), 1);
        let (restart, stops) = control();
        assert_eq!(execute(&set, "restart", &restart), None);
        assert!(restart.is_stopping() && restart.restart_requested());
        assert_eq!(stops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panicking_command_is_reported() {
        let set = commands(Arc::default());
        let (control, _) = control();
        assert_eq!(
            execute(&set, "boom a b", &control).as_deref(),
            Some("ERROR in err_command: exception executing command boom a b")
        );
        assert!(!control.is_stopping());
    }
}
