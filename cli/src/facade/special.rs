//! Special files and mirrors (BEHAVIOUR.md: Static files › Worker scripts): a file served at
//! a fixed route, read on every request, and a path made to follow another file.

use std::io;
use std::path::Path;

use super::absolute;
use crate::{Abort, Custom, QuickServer};

impl QuickServer {
    /// Serves the file at `path` on `GET mask` (argc 0), read on every request so edits
    /// show at once, as `content_type` (default `text/plain`), with ETag and 304 like every
    /// text route. Unlike the original, bytes that are not UTF-8 are sent unchanged.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.add_special_file("/version.txt", "VERSION", None);
    /// ```
    pub fn add_special_file(
        &mut self,
        mask: &str,
        path: impl AsRef<Path>,
        content_type: Option<&str>,
    ) -> &mut Self {
        let path = absolute(path.as_ref());
        let content_type = content_type.unwrap_or("text/plain").to_owned();
        self.text_get(mask, Some(0), move |_req, _args| {
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Custom::new(bytes).content_type(content_type.clone())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(Abort::new(404, "File not found"))
                }
                Err(e) => Err(Abort::new(500, format!("cannot read special file: {e}"))),
            }
        })
    }

    /// Makes `path_to` follow `path_from`: any existing `path_to` is replaced by a symbolic
    /// link to the absolute `path_from` (the original's behaviour where links exist).
    ///
    /// ```no_run
    /// # use quick_server::QuickServer;
    /// let server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.mirror_file("www/config.json", "config/dev.json")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn mirror_file(
        &self,
        path_to: impl AsRef<Path>,
        path_from: impl AsRef<Path>,
    ) -> io::Result<()> {
        let (to, from) = (absolute(path_to.as_ref()), absolute(path_from.as_ref()));
        if to == from {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot mirror itself: {}", to.display()),
            ));
        }
        if !from.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("file does not exist: {}", from.display()),
            ));
        }
        match std::fs::remove_file(&to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::os::unix::fs::symlink(&from, &to)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use quick_server_core::testing::Pair;

    use super::*;

    /// One request through a connection of `server`, jobs run inline.
    fn get(server: QuickServer, request: &[u8]) -> String {
        Pair::new(server.into_server(), Instant::now()).exchange(request)
    }

    #[test]
    fn special_file_is_read_on_every_request() {
        let dir = std::env::temp_dir().join(format!("qs-special-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("v.bin");
        std::fs::write(&file, b"v1\xff").unwrap();
        let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
        server.add_special_file("/v", &file, Some("application/x-v"));
        let wire = get(server, b"GET /v HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(wire.contains("Content-Type: application/x-v\r\n"), "{wire}");
        assert!(
            wire.ends_with("\r\n\r\nv1\u{fffd}"),
            "bytes pass through: {wire:?}"
        );
        std::fs::remove_file(&file).unwrap();
        let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
        server.add_special_file("/v", &file, None);
        assert!(get(server, b"GET /v HTTP/1.1\r\nHost: h\r\n\r\n").starts_with("HTTP/1.1 404 "));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mirror_file_links_and_refuses_bad_pairs() {
        let dir = std::env::temp_dir().join(format!("qs-mirror-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let from = dir.join("from.txt");
        let to = dir.join("to.txt");
        std::fs::write(&from, "one").unwrap();
        std::fs::write(&to, "old").unwrap();
        let server = QuickServer::new(([127, 0, 0, 1], 0).into());
        server.mirror_file(&to, &from).unwrap();
        std::fs::write(&from, "two").unwrap();
        assert_eq!(
            std::fs::read_to_string(&to).unwrap(),
            "two",
            "to follows from"
        );
        assert!(server.mirror_file(&to, &to).is_err());
        assert!(server.mirror_file(&to, dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
