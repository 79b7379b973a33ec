#!/usr/bin/env python3
"""Differential check of quick-server's reading of upstream answers, as a proxy, against
h11's client side (issue 18).

Every seed of fuzz/corpus/upstream/ whose request is a plain GET (selector 0 or 4: no
timeout) is an upstream answer. A hand-written upstream sends it, then closes; a real
quick-server proxies `GET /px/a` to it, once per transport. h11, as the client of that
upstream, gives the reference verdict:

- ok: a final response, status S, body B, complete;
- refused: RemoteProtocolError;
- cut: the answer ended before the message did.

Our verdict is what the client of the proxy gets, itself parsed with h11 (so our own
output must be well-formed HTTP/1.1 to h11 too): on ok, the same status and the same body;
on refused or cut, a 502 or an answer cut short with the connection closed.

Usage: responses.py --server PATH/TO/quick-server [--transports mio,std] [-v]
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

import h11

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "fuzz", "corpus", "upstream")


def h11_verdict(answer):
    """h11 as the upstream's client: ("ok", status, body) | ("refused",) | ("cut",)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/a", headers=[("Host", "up")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(answer)
    conn.receive_data(b"")
    status, body = None, b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return ("ok", status, body)
            elif event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed):
                return ("cut",)
    except h11.RemoteProtocolError:
        return ("refused",)


def ours_verdict(wire):
    """The proxy's answer to its client, read by h11: ("ok", status, body) | ("cut", status)
    | ("garbage", why)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/px/a", headers=[("Host", "front")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(wire)
    conn.receive_data(b"")
    status, body = None, b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return ("ok", status, body)
            else:
                return ("cut", status)
    except h11.RemoteProtocolError as e:
        # After a well-formed head, an error can only be the body cut by the close.
        return ("cut", status) if status is not None else ("garbage", str(e))


class Upstream:
    """Answers every connection with `self.answer` after reading a request head, then
    closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.answer = b""
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        piece = conn.recv(4096)
                        if not piece:
                            break
                        head += piece
                    conn.sendall(self.answer)
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(1)  # until the proxy closes its side
                except OSError:
                    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port):
    """`GET /px/a` through the proxy, read to its close."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(b"GET /px/a HTTP/1.1\r\nHost: front\r\nConnection: close\r\n\r\n")
        wire = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                return wire
            wire += piece


# `Limits::upstream_max_head`'s default: a longer upstream head is refused (502).
UPSTREAM_MAX_HEAD = 64 * 1024


def judge(answer, theirs, ours):
    """None when we agree with h11; ("stricter", why) where we refuse on purpose what h11
    reads; ("fail", why) otherwise."""
    if ours[0] == "garbage":
        return ("fail", f"our answer is not HTTP/1.1 to h11: {ours[1]}")
    if theirs[0] == "ok":
        if ours[0] == "ok" and ours[1:] == theirs[1:]:
            return None
        head = answer.find(b"\r\n\r\n") + 4
        if head > UPSTREAM_MAX_HEAD and ours[:2] == ("ok", 502):
            # h11 reads a complete head of any size in one piece; ours has a named limit.
            return ("stricter", f"a {head}-byte head is over upstream_max_head: we answered 502")
        if not 100 <= theirs[1] <= 599 and ours[:2] == ("ok", 502):
            # RFC 9110 section 15: every valid status code is in 100..599; h11 takes any
            # three digits. We answer 502 (docs/BEHAVIOUR.md, Proxy).
            return ("stricter", f"status {theirs[1]} is outside 100-599: we answered 502")
        return ("fail", f"h11 read {theirs[1]} with {len(theirs[2])} body bytes; we gave {ours}")
    # refused or cut: a 502, or a cut answer (the connection closed).
    if ours[0] == "ok" and ours[1] != 502:
        return ("fail", f"h11 {theirs[0]} it; we relayed {ours[1]} as complete")
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--transports", default="mio,std")
    parser.add_argument("-v", action="store_true")
    args = parser.parse_args()
    cases = []
    for name in sorted(os.listdir(CORPUS)):
        with open(os.path.join(CORPUS, name), "rb") as f:
            data = f.read()
        if len(data) >= 2 and data[0] in (0, 4):
            cases.append((name, data[2:]))
    upstream = Upstream()
    failures = stricter = 0
    for transport in args.transports.split(","):
        port = free_port()
        proc = subprocess.Popen(
            [args.server, "--addr", "127.0.0.1", "--port", str(port), "--transport", transport,
             "--proxy", f"/px/=http://127.0.0.1:{upstream.port}/", os.getcwd()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        print(f"{transport}: quick-server did not start")
                        return 1
                    time.sleep(0.05)
            for name, answer in cases:
                upstream.answer = answer
                theirs = h11_verdict(answer)
                ours = ours_verdict(fetch(port))
                problem = judge(answer, theirs, ours)
                if problem:
                    kind, why = problem
                    failures += kind == "fail"
                    stricter += kind == "stricter"
                    print(f"{transport} {name}: {kind}: {why}")
                elif args.v:
                    print(f"{transport} {name}: agree (h11 {theirs[0]}, ours {ours[0]} {ours[1]})")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    total = len(cases) * len(args.transports.split(","))
    agree = total - failures - stricter
    print(f"responses: {agree} of {total} upstream answers agree with h11, "
          f"{stricter} refused on purpose, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
