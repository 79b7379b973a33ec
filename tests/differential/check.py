#!/usr/bin/env python3
"""Differential check of quick-server's HTTP/1.1 request framing against h11 (issue 10).

Every case of tests/conformance/cases.txt and of corpus.txt beside this script is sent as
raw bytes (followed by the end of the client's sending side) to a real quick-server, once
per transport, and fed to an h11 server connection. For each case the two verdicts are
compared:

- h11: the requests it framed completely (method, target, body length), then how it ended:
  it refused the bytes (RemoteProtocolError), the input ended mid-request, or it closed
  cleanly or by Connection: close.
- ours: the answers, in order. An answer that refuses the framing (400, 408, 411, 413, 414,
  417, 431, 505, or 501 with Connection: close) ends the accepted requests; the others
  count as accepted requests. A 200 with a file body tells which file was asked for, so the
  target h11 framed at the same position must name that file: that is where the message
  boundaries are compared.

Outcomes: agree; stricter (we refused, or stopped, earlier than h11); looser (we accepted
a request h11 refused); mismatch (both accepted the same number of requests but not the
same ones). The script exits 1 on any looser case not listed in ALLOWED_LOOSER (each entry
says why the RFC sides with us there), on any mismatch, and on an answer it cannot parse.

Usage: check.py --server PATH/TO/quick-server [--transports mio,std] [-v]
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import h11

HERE = os.path.dirname(os.path.abspath(__file__))
TABLES = [
    os.path.join(HERE, "..", "conformance", "cases.txt"),
    os.path.join(HERE, "corpus.txt"),
]

# The folder served; a 200 body names the file it came from.
FILES = {
    "hello.txt": b"hello\n",
    "a.txt": b"file a\n",
    "b.txt": b"file b\n",
    "c.txt": b"file c\n",
    "probe.txt": b"probe\n",
    "index.html": b"<p>index</p>\n",
}
BY_BODY = {body: "/" + name for name, body in FILES.items()}

# Answers that refuse a request's framing or head; after one the connection closes.
REFUSALS = {400, 408, 411, 413, 414, 417, 431, 505}

# Cases where we accept a request h11 refuses, and why the RFC allows or asks for it.
ALLOWED_LOOSER = {
    "ok-leading-crlf": "RFC 9112 §2.2: a server SHOULD ignore at least one empty line "
    "before the request line; h11 refuses it",
    "ok-leading-crlf-many": "RFC 9112 §2.2 (as ok-leading-crlf)",
    "ok-crlf-between-requests": "RFC 9112 §2.2 (as ok-leading-crlf), after a body",
    "pipe-leading-crlf-between": "RFC 9112 §2.2 (as ok-leading-crlf), between requests",
    "bad-crlf-flood-before-request": "RFC 9112 §2.2 (as ok-leading-crlf); with the default "
    "limits the empty lines fit the input buffer",
    "ok-chunk-extension-bws": "RFC 9112 §7.1.1: chunk-ext = *( BWS \";\" ... ) allows "
    "whitespace before the semicolon; h11 refuses it",
    "pipe-http10-keep-alive-then-get": "RFC 9112 §9.3 and appendix C.2.2: an HTTP/1.0 "
    "client may ask for keep-alive; h11 always closes 1.0 connections",
}

READ_TIMEOUT = 10.0


# ----- the tables -------------------------------------------------------------------------


def unescape(text):
    """Decodes \\r \\n \\t \\0 \\\\ \\xHH and the repeat \\{N:text} (README of the table)."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        if i + 1 >= len(text):
            raise ValueError("a lone backslash at the end")
        kind = text[i + 1]
        i += 2
        simple = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}
        if kind in simple:
            out += simple[kind]
        elif kind == "x":
            out.append(int(text[i : i + 2], 16))
            i += 2
        elif kind == "{":
            end = repeat_end(text, i)
            count, _, body = text[i:end].partition(":")
            out += unescape(body) * int(count)
            i = end + 1
        else:
            raise ValueError("unknown escape \\" + kind)
    return bytes(out)


def repeat_end(text, start):
    """Index of the } closing a repeat whose text starts at `start` (nesting counts)."""
    depth = 0
    i = start
    while i < len(text):
        if text[i] == "\\":
            if text[i + 1 : i + 2] == "{":
                depth += 1
            i += 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise ValueError("an unclosed \\{ repeat")


def load_table(path):
    """[(id, bytes)] of a table in the conformance format."""
    cases = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                cases.append((line[1:-1], bytearray()))
                continue
            key, sep, value = line.partition(":")
            if not sep or not cases:
                raise ValueError(f"{path}:{number}: not key: value")
            if value.startswith(" "):
                value = value[1:]
            if key == "send":
                cases[-1][1].extend(unescape(value))
            elif key == "line":
                cases[-1][1].extend(unescape(value) + b"\r\n")
    return [(case_id, bytes(data)) for case_id, data in cases]


# ----- h11's verdict ----------------------------------------------------------------------


class Verdict:
    """Requests accepted, in order, and how the exchange ended."""

    def __init__(self):
        self.accepted = []  # h11: (method, target, body length); ours: (status, body)
        self.end = None  # refused | truncated | closed | error
        self.detail = ""

    def __repr__(self):
        return f"{self.accepted} then {self.end} {self.detail}".strip()


def h11_verdict(data):
    conn = h11.Connection(h11.SERVER)
    verdict = Verdict()
    conn.receive_data(data)
    eof = False
    current = None
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            verdict.end = "truncated" if eof else "refused"
            verdict.detail = str(e)
            return verdict
        if event is h11.NEED_DATA:
            if eof:
                verdict.end = "truncated"
                return verdict
            conn.receive_data(b"")
            eof = True
        elif isinstance(event, h11.Request):
            current = [event.method.decode("latin-1"), event.target.decode("latin-1"), 0]
        elif isinstance(event, h11.Data):
            current[2] += len(event.data)
        elif isinstance(event, h11.EndOfMessage):
            verdict.accepted.append(tuple(current))
            # Not 2xx, so that CONNECT or Upgrade never switch protocols.
            conn.send(h11.Response(status_code=404, headers=[("Content-Length", "0")]))
            conn.send(h11.EndOfMessage())
            if conn.our_state is h11.MUST_CLOSE:
                verdict.end = "closed"
                verdict.detail = "(Connection: close)"
                return verdict
            conn.start_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            verdict.end = "closed"
            return verdict
        else:  # PAUSED cannot happen: every cycle is restarted above.
            verdict.end = "error"
            verdict.detail = f"unexpected h11 event {event!r}"
            return verdict


# ----- our verdict ------------------------------------------------------------------------


def read_all(port, data):
    """Sends `data`, ends the sending side, and reads until the server closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
    try:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server refused and closed before taking everything
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                return b"".join(chunks), "the server neither answered nor closed"
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), None
    finally:
        sock.close()


def parse_responses(wire):
    """[(status, closes, body)]; an answer to HEAD is told by the next answer (or the end)
    starting where its body would."""
    out = []
    pos = 0
    while pos < len(wire):
        end = wire.find(b"\r\n\r\n", pos)
        if end < 0:
            raise ValueError(f"a partial answer: {wire[pos:pos + 80]!r}")
        lines = wire[pos:end].split(b"\r\n")
        match = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
        if not match:
            raise ValueError(f"not a status line: {lines[0][:80]!r}")
        status = int(match.group(1))
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        closes = fields.get(b"connection") == b"close"
        body_start = end + 4
        length = int(fields.get(b"content-length", b"0"))
        if 100 <= status < 200 or status in (204, 304):
            length = 0
        rest = wire[body_start:]
        if length and (not rest or rest.startswith(b"HTTP/1.")):
            length = 0  # an answer to HEAD: the length describes a body not sent
        if b"chunked" in fields.get(b"transfer-encoding", b""):
            raise ValueError("a chunked answer (not expected from a file server)")
        out.append((status, closes, rest[:length]))
        pos = body_start + length
    return out


def our_verdict(port, data):
    verdict = Verdict()
    wire, problem = read_all(port, data)
    if problem:
        verdict.end = "error"
        verdict.detail = problem
        return verdict
    try:
        answers = parse_responses(wire)
    except ValueError as e:
        verdict.end = "error"
        verdict.detail = str(e)
        return verdict
    for status, closes, body in answers:
        if 100 <= status < 200:
            continue
        if status in REFUSALS or (status == 501 and closes):
            verdict.end = "refused"
            verdict.detail = str(status)
            return verdict
        verdict.accepted.append((status, body))
    verdict.end = "closed"
    return verdict


# ----- comparing --------------------------------------------------------------------------


def target_path(target):
    """The path of an origin- or absolute-form target, without its query."""
    match = re.match(r"(?i)https?://[^/?]*", target)
    if match:
        target = target[match.end():] or "/"
    return target.split("?", 1)[0]


def compare(ours, theirs):
    """(outcome, reason) for one case."""
    if ours.end == "error":
        return "error", ours.detail
    for i, ((status, body), (method, target, _)) in enumerate(
        zip(ours.accepted, theirs.accepted)
    ):
        name = BY_BODY.get(body) if status == 200 else None
        path = target_path(target)
        if name and path != name and not (name == "/index.html" and path == "/"):
            return "mismatch", f"request {i + 1}: we served {name}, h11 framed {method} {target}"
    n_ours, n_theirs = len(ours.accepted), len(theirs.accepted)
    if n_ours > n_theirs:
        return "looser", f"we accepted {n_ours} request(s), h11 {n_theirs}: {theirs.end} {theirs.detail}"
    if n_ours < n_theirs:
        return "stricter", f"we accepted {n_ours} then {ours.end} {ours.detail}; h11 accepted {n_theirs}"
    if ours.end == "refused" and theirs.end != "refused":
        return "stricter", f"we refused with {ours.detail}; h11 {theirs.end}"
    return "agree", ""


# ----- the server -------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """quick-server on a folder of FILES, stopped on exit."""

    def __init__(self, binary, transport, root, log):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--addr", "127.0.0.1", "--port", str(self.port),
             "--transport", transport, "--all-files", root],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"quick-server exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("quick-server did not start listening")
                time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_transport(binary, transport, cases, verbose):
    with tempfile.TemporaryDirectory(prefix="qs-differential-") as root:
        for name, body in FILES.items():
            with open(os.path.join(root, name), "wb") as f:
                f.write(body)
        log_path = os.path.join(root, "server.log")
        with open(log_path, "wb") as log:
            server = Server(binary, transport, os.path.join(root), log)
            try:
                with ThreadPoolExecutor(max_workers=8) as pool:
                    ours = list(pool.map(lambda c: our_verdict(server.port, c[1]), cases))
            finally:
                server.stop()
    results = []
    for (case_id, data), mine in zip(cases, ours):
        theirs = h11_verdict(data)
        outcome, reason = compare(mine, theirs)
        if outcome == "looser" and case_id in ALLOWED_LOOSER:
            outcome, reason = "allowed", ALLOWED_LOOSER[case_id]
        results.append((case_id, outcome, reason, mine, theirs))
    counts = {}
    for _, outcome, *_ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"\n== differential {transport}: " + ", ".join(
        f"{counts.get(k, 0)} {k}" for k in
        ("agree", "stricter", "allowed", "looser", "mismatch", "error")))
    for case_id, outcome, reason, mine, theirs in results:
        if outcome == "agree" and not verbose:
            continue
        mark = "FAIL " if outcome in ("looser", "mismatch", "error") else ""
        print(f"  {mark}{outcome:8} {case_id}: {reason}")
        if verbose or mark:
            print(f"           ours: {mine}\n           h11:  {theirs}")
    return results


def self_test():
    """Checks the helpers on made-up input, so a broken comparison cannot pass silently."""
    assert unescape(r"a\r\n\x41\{3:b}\{2:x\{2:y}}\0") == b"a\r\nAbbbxyyxyy\0"
    wire = (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nfile a\n"
            b"HTTP/1.1 400 Bad\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno")
    assert parse_responses(wire) == [(200, False, b""), (200, False, b"file a\n"),
                                     (400, True, b"no")]

    def verdict(accepted, end):
        v = Verdict()
        v.accepted, v.end = accepted, end
        return v

    a, b = (200, FILES["a.txt"]), (200, FILES["b.txt"])
    ga, gb = ("GET", "/a.txt", 0), ("GET", "http://t/b.txt?q", 0)
    cases = [
        (verdict([a, b], "closed"), verdict([ga, gb], "closed"), "agree"),
        (verdict([a], "refused"), verdict([ga, gb], "closed"), "stricter"),
        (verdict([a], "refused"), verdict([ga], "truncated"), "stricter"),
        (verdict([a, b], "closed"), verdict([ga], "refused"), "looser"),
        (verdict([b], "closed"), verdict([ga], "closed"), "mismatch"),
        (verdict([], "error"), verdict([], "closed"), "error"),
    ]
    for ours, theirs, expected in cases:
        got = compare(ours, theirs)[0]
        assert got == expected, (ours, theirs, got, expected)
    refused = h11_verdict(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n")
    assert (refused.accepted, refused.end) == ([], "refused"), refused
    two = h11_verdict(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
                      b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET")
    assert (two.accepted, two.end) == ([("POST", "/x", 2), ("GET", "/a.txt", 0)],
                                       "truncated"), two


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="path to the quick-server binary")
    parser.add_argument("--transports", default="mio,std")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    self_test()
    cases = []
    for path in TABLES:
        cases.extend(load_table(path))
    ids = [case_id for case_id, _ in cases]
    if len(ids) != len(set(ids)):
        sys.exit("case ids repeat across the tables")
    print(f"differential: {len(cases)} cases, h11 {h11.__version__}")
    passed = failed = 0
    for transport in args.transports.split(","):
        for _, outcome, *_ in run_transport(args.server, transport, cases, args.verbose):
            if outcome in ("looser", "mismatch", "error"):
                failed += 1
            else:
                passed += 1
    print(f"\ndifferential: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
