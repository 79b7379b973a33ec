#!/usr/bin/env python3
"""Mixed traffic against a running quick-server for a fixed time, with the server's RSS and
descriptors sampled along the way (issue 10's soak; started by tests/soak/run).

Client threads, each running one kind of traffic in a loop and checking every answer:
  keepalive  GETs of small files on one connection, body checked
  fresh      a new connection per GET, with Connection: close
  pipeline   8 requests written at once, answers checked in order
  download   the big file whole (length and checksum) or cut off after 256 KiB
  upload     POST bodies of up to 2 MiB, by length or chunked (answered 404 by a file
             server, on a connection that must stay usable), or abandoned mid-body
  head       HEAD requests, whose answers carry no body
  hostile    a refused request from tests/conformance/cases.txt: some 4xx/5xx, then a close
  slowloris  connections dribbling a head byte by byte until the server's deadline cuts them

Every SAMPLE seconds one line: requests so far, errors, server RSS, descriptors and threads.
At the end a summary; exit 1 on any error, on descriptors left open once the clients are
gone, or on RSS still growing in the second half of the run.

Usage: traffic.py --port PORT --pid PID --www DIR [--duration S] [--sample S]
"""

import argparse
import hashlib
import os
import random
import re
import select
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "..", "conformance", "cases.txt")
TIMEOUT = 15.0
# Answers that refuse a request; the connection closes after them.
REFUSALS = {400, 408, 411, 413, 414, 417, 431, 501, 505}


class Stats:
    """Counters shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}
        self.errors = {}
        self.examples = []

    def ok(self, kind, n=1):
        with self.lock:
            self.requests[kind] = self.requests.get(kind, 0) + n

    def error(self, kind, what):
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            if len(self.examples) < 20:
                self.examples.append(f"{kind}: {what}")

    def totals(self):
        with self.lock:
            return sum(self.requests.values()), sum(self.errors.values())


class Conn:
    """One client connection that reads whole responses."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(262144)
        if not chunk:
            raise EOFError("closed by the server")
        self.buf += chunk

    def response(self, head_only=False):
        """(status, fields, body) of the next response."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        match = re.match(rb"HTTP/1\.1 (\d{3}) ", lines[0] + b" ")
        if not match:
            raise ValueError(f"bad status line {lines[0][:60]!r}")
        status = int(match.group(1))
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if head_only or 100 <= status < 200 or status in (204, 304):
            return status, fields, b""
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            return status, fields, self._chunked()
        length = int(fields.get(b"content-length", b"0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, fields, body

    def _chunked(self):
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                self._fill()
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]
            if size == 0:
                return body

    def closes(self):
        """Whether the server closes with nothing more to say."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return not self.buf
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return not self.buf
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def get(path, close=False):
    extra = b"Connection: close\r\n" if close else b""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: soak\r\n" + extra + b"\r\n"


def load_hostile():
    """The refused requests of the conformance table that a default server also refuses."""
    cases, current = [], None
    escapes = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}

    def unescape(text):
        out, i = bytearray(), 0
        while i < len(text):
            if text[i] != "\\":
                out += text[i].encode()
                i += 1
            elif text[i + 1] in escapes:
                out += escapes[text[i + 1]]
                i += 2
            elif text[i + 1] == "x":
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
            else:  # a repeat: \{N:text}, nesting allowed
                depth, j = 0, i + 2
                while not (text[j] == "}" and depth == 0):
                    if text[j:j + 2] == "\\{":
                        depth, j = depth + 1, j + 2
                        continue
                    if text[j] == "\\":
                        j += 1
                    elif text[j] == "}":
                        depth -= 1
                    j += 1
                count, _, inner = text[i + 2:j].partition(":")
                out += unescape(inner) * int(count)
                i = j + 1
        return bytes(out)

    with open(CASES, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("["):
                current = {"id": line[1:-1], "bytes": b"", "eof": False, "xfail": False}
                cases.append(current)
            elif current is not None and ":" in line and not line.startswith("#"):
                key, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if key == "send":
                    current["bytes"] += unescape(value)
                elif key == "line":
                    current["bytes"] += unescape(value) + b"\r\n"
                elif key == "eof":
                    current["eof"] = True
                elif key == "xfail":
                    current["xfail"] = True
    # Size cases depend on the suite's small limits; timeouts would idle; xfails are open.
    skip = ("too-long", "too-large", "too-many", "many-fields", "over-limit", "u64-max",
            "huge", "flood")
    return [c["bytes"] for c in cases
            if c["id"].startswith("bad-") and not c["eof"] and not c["xfail"]
            and not any(s in c["id"] for s in skip)]


# ----- the kinds of traffic ---------------------------------------------------------------


def keepalive(port, files, stats, stop, rng):
    conn = Conn(port)
    try:
        for _ in range(rng.randint(20, 200)):
            if stop.is_set():
                return
            name = rng.choice(sorted(files["small"]))
            conn.send(get("/" + name))
            status, _, body = conn.response()
            if status != 200 or body != files["small"][name]:
                stats.error("keepalive", f"{name}: {status}, {len(body)} bytes")
                return
            stats.ok("keepalive")
    finally:
        conn.close()


def fresh(port, files, stats, stop, rng):
    name = rng.choice(sorted(files["small"]))
    conn = Conn(port)
    try:
        conn.send(get("/" + name, close=True))
        status, fields, body = conn.response()
        if status != 200 or body != files["small"][name] or fields.get(b"connection") != b"close":
            stats.error("fresh", f"{name}: {status}")
        elif not conn.closes():
            stats.error("fresh", "the connection stayed open after Connection: close")
        else:
            stats.ok("fresh")
    finally:
        conn.close()


def pipeline(port, files, stats, stop, rng):
    names = [rng.choice(sorted(files["small"]) + ["missing.txt"]) for _ in range(8)]
    conn = Conn(port)
    try:
        conn.send(b"".join(get("/" + n) for n in names))
        for name in names:
            status, _, body = conn.response()
            want = (200, files["small"][name]) if name in files["small"] else (404, None)
            if status != want[0] or (want[1] is not None and body != want[1]):
                stats.error("pipeline", f"{name}: {status}")
                return
        stats.ok("pipeline", len(names))
    finally:
        conn.close()


def download(port, files, stats, stop, rng):
    conn = Conn(port)
    try:
        conn.send(get("/big.bin"))
        if rng.random() < 0.5:
            got = 0
            while got < 256 * 1024:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    stats.error("download", "closed early")
                    return
                got += len(chunk)
            stats.ok("download-cut")
            return
        status, _, body = conn.response()
        if status != 200 or hashlib.sha256(body).digest() != files["big_sha"]:
            stats.error("download", f"{status}, {len(body)} bytes")
        else:
            stats.ok("download")
    finally:
        conn.close()


def upload(port, files, stats, stop, rng):
    size = rng.randint(0, 2 << 20)
    body = os.urandom(size)
    conn = Conn(port)
    try:
        if rng.random() < 0.2:
            conn.send(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n"
                      % (size + 1000))
            conn.send(body[: size // 2])
            stats.ok("upload-cut")
            return
        if rng.random() < 0.5:
            conn.send(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n"
                      % size + body)
        else:
            pieces = [body[i:i + 65536] for i in range(0, size, 65536)]
            wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
            conn.send(b"POST /upload HTTP/1.1\r\nHost: soak\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + wire + b"0\r\n\r\n")
        status, _, _ = conn.response()
        conn.send(get("/small-0.txt"))
        after, _, again = conn.response()
        if status != 404 or after != 200 or again != files["small"]["small-0.txt"]:
            stats.error("upload", f"{status} then {after}")
        else:
            stats.ok("upload")
    finally:
        conn.close()


def head(port, files, stats, stop, rng):
    name = rng.choice(sorted(files["small"]))
    conn = Conn(port)
    try:
        conn.send(b"HEAD /" + name.encode() + b" HTTP/1.1\r\nHost: soak\r\n\r\n" + get("/" + name))
        status, fields, _ = conn.response(head_only=True)
        length = int(fields.get(b"content-length", b"-1"))
        status2, _, body = conn.response()
        if status != 200 or length != len(files["small"][name]) or body != files["small"][name]:
            stats.error("head", f"{status} {length} then {status2}")
        else:
            stats.ok("head", 2)
    finally:
        conn.close()


def hostile(port, files, stats, stop, rng):
    data = rng.choice(files["hostile"])
    conn = Conn(port)
    try:
        try:
            conn.send(data)
        except OSError:
            pass  # refused before it was all sent
        # A refused request may follow an accepted one (pipelined): read up to the refusal.
        for _ in range(3):
            try:
                status, _, _ = conn.response()
            except EOFError:
                stats.error("hostile", f"closed without a refusal: {data[:50]!r}")
                return
            if status in REFUSALS:
                break
        if status not in REFUSALS or not conn.closes():
            stats.error("hostile", f"{status} for {data[:50]!r}")
        else:
            stats.ok("hostile")
    finally:
        conn.close()


def slowloris(port, files, stats, stop, rng):
    conn = Conn(port)
    data = b"GET /small-0.txt HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"a" * 10000
    try:
        for byte in data:
            if stop.is_set():
                return
            # Stop dribbling as soon as the server answers, so that no write of ours
            # meets a closed socket and resets the answer away.
            readable, _, _ = select.select([conn.sock], [], [], rng.uniform(0.1, 0.2))
            if readable:
                break
            conn.send(bytes([byte]))
        status, _, _ = conn.response()
        if status != 408:
            stats.error("slowloris", f"answered {status}")
        else:
            stats.ok("slowloris")
    except (EOFError, OSError, ValueError) as e:
        stats.error("slowloris", f"no 408: {e}")
    finally:
        conn.close()


KINDS = [
    (keepalive, 4),
    (fresh, 2),
    (pipeline, 2),
    (download, 1),
    (upload, 2),
    (head, 1),
    (hostile, 2),
    (slowloris, 4),
]


def worker(kind, port, files, stats, stop, seed):
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            kind(port, files, stats, stop, rng)
        except (OSError, EOFError, ValueError) as e:
            if not stop.is_set():
                stats.error(kind.__name__, f"{type(e).__name__}: {e}")
                time.sleep(0.1)


# ----- the server's figures ---------------------------------------------------------------


def server_figures(pid):
    """(RSS KiB, open descriptors, threads) of the server process."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--www", required=True)
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--sample", type=float, default=10)
    args = parser.parse_args()

    files = {"small": {}}
    for name in sorted(os.listdir(args.www)):
        with open(os.path.join(args.www, name), "rb") as f:
            data = f.read()
        if name.startswith("small-"):
            files["small"][name] = data
        elif name == "big.bin":
            files["big_sha"] = hashlib.sha256(data).digest()
    files["hostile"] = load_hostile()

    stats, stop = Stats(), threading.Event()
    start_rss, start_fds, start_threads = server_figures(args.pid)
    threads = []
    for kind, count in KINDS:
        for i in range(count):
            t = threading.Thread(target=worker, args=(kind, args.port, files, stats, stop,
                                                      hash((kind.__name__, i))), daemon=True)
            t.start()
            threads.append(t)
    print(f"soak: {len(threads)} client threads, {len(files['hostile'])} hostile requests, "
          f"server RSS {start_rss / 1024:.1f} MiB, {start_fds} fds, {start_threads} threads",
          flush=True)
    print(f"{'time':>6} {'requests':>9} {'req/s':>7} {'errors':>6} {'RSS MiB':>8} "
          f"{'fds':>5} {'threads':>7}", flush=True)
    started = time.monotonic()
    samples = []
    last_requests, last_time = 0, started
    while True:
        left = started + args.duration - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(args.sample, left))
        now = time.monotonic()
        requests, errors = stats.totals()
        rss, fds, nthreads = server_figures(args.pid)
        samples.append((now - started, rss))
        rate = (requests - last_requests) / max(now - last_time, 1e-9)
        last_requests, last_time = requests, now
        print(f"{now - started:6.0f} {requests:9d} {rate:7.0f} {errors:6d} {rss / 1024:8.1f} "
              f"{fds:5d} {nthreads:7d}", flush=True)

    stop.set()
    for t in threads:
        t.join(timeout=TIMEOUT + 5)
    # Give the server its moment to close what the clients dropped.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        end_rss, end_fds, end_threads = server_figures(args.pid)
        if end_fds <= start_fds:
            break
        time.sleep(0.2)
    requests, errors = stats.totals()
    peak = max((rss for _, rss in samples), default=start_rss)
    half = [rss for t, rss in samples if t >= args.duration / 2]
    growth = (half[-1] - half[0]) / 1024 if len(half) >= 2 else 0.0
    print(f"\nsoak: {requests} requests in {args.duration:.0f} s, {errors} errors")
    print("soak: by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.requests.items())))
    if stats.errors:
        print("soak: errors by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.errors.items())))
        for example in stats.examples:
            print(f"  {example}")
    print(f"soak: server RSS {start_rss / 1024:.1f} MiB at start, peak {peak / 1024:.1f} MiB, "
          f"{end_rss / 1024:.1f} MiB at the end; second half {growth:+.1f} MiB; fds "
          f"{start_fds} -> {end_fds}; threads {start_threads} -> {end_threads}")
    failed = []
    if errors:
        failed.append(f"{errors} errors")
    if end_fds > start_fds:
        failed.append(f"{end_fds - start_fds} descriptors left open")
    if growth > 16:
        failed.append(f"RSS grew {growth:.1f} MiB in the second half")
    if failed:
        print("soak: FAILED: " + "; ".join(failed))
        sys.exit(1)
    print("soak: passed")


if __name__ == "__main__":
    main()
