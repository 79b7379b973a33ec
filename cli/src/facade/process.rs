//! The builder methods for what surrounds the server in its process: console commands,
//! the request log, and restart.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quick_server_core::console::{CommandError, Completer};

use crate::logging::SLOW_THRESHOLD;
use crate::restart::{is_original, supervise};
use crate::transport;
use crate::QuickServer;

impl QuickServer {
    /// Registers a console command: `handler` gets the words after the command name;
    /// `argc` fixes their number (`None`: any); `completer` offers TAB candidates for an
    /// argument. Underscores in `name` are typed as spaces (`cache_clear` is
    /// `cache clear`). A command named `help`, `restart` or `quit` replaces the built-in.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use quick_server::{msg, Abort, QuickServer};
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// let hits = Arc::new(AtomicUsize::new(0));
    /// let counter = Arc::clone(&hits);
    /// server.json_get("/api/uptime/", None, move |_req, _args| {
    ///     counter.fetch_add(1, Ordering::SeqCst);
    ///     Ok::<_, Abort>("up")
    /// });
    /// // `requests uptime` prints the count; TAB after `requests ` offers `uptime`.
    /// server.cmd(
    ///     "requests",
    ///     Some(1),
    ///     move |args| match args.first().map(String::as_str) {
    ///         Some("uptime") => msg(&format!("requests made to uptime: {}", hits.load(Ordering::SeqCst))),
    ///         other => msg(&format!("unknown request: {}", other.unwrap_or_default())),
    ///     },
    ///     Some(Box::new(|_args: &[String], word: &str| {
    ///         ["uptime"].iter().filter(|c| c.starts_with(word)).map(|c| c.to_string()).collect()
    ///     })),
    /// )?;
    /// assert!(server.cmd("two words", None, |_| {}, None).is_err());
    /// # Ok::<(), quick_server::CommandError>(())
    /// ```
    ///
    /// # Errors
    /// The name contains a space or other whitespace, or is empty.
    pub fn cmd<F>(
        &mut self,
        name: &str,
        argc: Option<usize>,
        handler: F,
        completer: Option<Completer>,
    ) -> Result<&mut Self, CommandError>
    where
        F: Fn(&[String]) + Send + Sync + 'static,
    {
        self.console
            .commands
            .add(name, argc, Box::new(handler), completer)?;
        Ok(self)
    }

    /// Does not read commands from stdin at all (the original's `no_command_loop`): for
    /// servers run in the background, whose stdin belongs to someone else.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.no_command_loop(true); // stop it with SIGINT or SIGTERM
    /// ```
    pub fn no_command_loop(&mut self, on: bool) -> &mut Self {
        self.console.no_command_loop = on;
        self
    }

    /// The prompt written to stdout before each command (default `"> "`).
    pub fn prompt(&mut self, prompt: impl Into<String>) -> &mut Self {
        self.console.prompt = prompt.into();
        self
    }

    /// Where the terminal's command history is kept (default `.cmd_history`).
    pub fn history_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.console.history_file = path.into();
        self
    }
    /// Stops logging requests answered 200 or 304 (other statuses are still logged): the
    /// log then shows what went wrong.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.suppress_noise(true).report_slow_requests(true);
    /// ```
    pub fn suppress_noise(&mut self, on: bool) -> &mut Self {
        self.log.suppress_noise = on;
        self
    }

    /// Logs dynamic requests still running after 5 s (`request takes longer than expected:
    /// "GET /api/x"`), and again when they finish, with their duration.
    pub fn report_slow_requests(&mut self, on: bool) -> &mut Self {
        self.log.slow_threshold = on.then_some(SLOW_THRESHOLD);
        self
    }

    /// Like [`report_slow_requests`](Self::report_slow_requests) with another threshold.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// use std::time::Duration;
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.report_slow_requests_after(Duration::from_millis(500));
    /// ```
    pub fn report_slow_requests_after(&mut self, threshold: Duration) -> &mut Self {
        self.log.slow_threshold = Some(threshold);
        self
    }

    /// Targets (as written in the request line, e.g. `/wp-login.php`) whose 404s are not
    /// logged: the original's `set_common_invalid_paths`, for the paths scanners try.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.set_common_invalid_paths(["/wp-login.php", "/.env"]);
    /// ```
    pub fn set_common_invalid_paths<I: IntoIterator<Item = S>, S: Into<String>>(
        &mut self,
        paths: I,
    ) -> &mut Self {
        self.log.common_invalid_paths = Arc::new(paths.into_iter().map(Into::into).collect());
        self
    }
    /// Makes the process restartable: unless it is already a supervised child, it binds
    /// the server's address, becomes the supervisor and never returns (it exits with the
    /// last child's status). In a child it returns at once. Call it early: the code before
    /// it runs in the supervisor too.
    ///
    /// The console's `restart` (or SIGHUP) then ends the serving child once its requests in
    /// flight are answered, and the supervisor starts the program again on the same
    /// listening socket: no connection is refused meanwhile.
    ///
    /// ```no_run
    /// use quick_server::{msg, QuickServer};
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 8000).into());
    /// server.setup_restart()?;
    /// // From here on, this runs in the child, once per start.
    /// if quick_server::has_been_restarted() {
    ///     msg("restarted: routes and files reloaded");
    /// }
    /// server.serve_forever()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn setup_restart(&mut self) -> io::Result<&mut Self> {
        if !is_original() {
            return Ok(self);
        }
        let listener = transport::listen(self.addr())?;
        supervise(&listener, false)
    }
}
