#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/ (run from anywhere; rewrites it).

Each seed is small and named for what it exercises. The fuzzers add their own findings
next to these while running; only the seeds written here are checked in.
"""
import pathlib
import shutil
import struct

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"

H = b"Host: x\r\n"


def req(line, *fields, body=b""):
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


GET_A = req(b"GET /a.txt HTTP/1.1", b"Host: x")

CONNECTION = {
    "get-file": GET_A,
    "get-big-region": req(b"GET /big.bin HTTP/1.1", b"Host: x"),
    "get-sub-dir-redirect": req(b"GET /sub HTTP/1.1", b"Host: x"),
    "get-symlink-escape": req(b"GET /escape HTTP/1.1", b"Host: x"),
    "get-traversal": req(b"GET /../../etc/passwd HTTP/1.1", b"Host: x"),
    "get-encoded-traversal": req(b"GET /%2e%2e/%2e%2e/outside.txt HTTP/1.1", b"Host: x"),
    "get-range": req(b"GET /big.bin HTTP/1.1", b"Host: x", b"Range: bytes=100-199"),
    "get-if-none-match": req(b"GET /a.txt HTTP/1.1", b"Host: x", b'If-None-Match: "3610a686", W/"x"'),
    "head-file": req(b"HEAD /a.txt HTTP/1.1", b"Host: x"),
    "connection-close": req(b"GET /a.txt HTTP/1.1", b"Host: x", b"Connection: close") + GET_A,
    "pipelined-3": GET_A + req(b"HEAD /sub/b.json HTTP/1.1", b"Host: x") + req(b"GET /nope HTTP/1.1", b"Host: x"),
    "pipelined-big": req(b"GET /big.bin HTTP/1.1", b"Host: x") * 8,
    "post-length": req(b"POST /x HTTP/1.1", b"Host: x", b"Content-Length: 5", body=b"hello") + GET_A,
    "post-chunked": req(b"POST /x HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked",
                        body=b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n") + GET_A,
    "expect-continue": req(b"PUT /up HTTP/1.1", b"Host: x", b"Expect: 100-continue", b"Content-Length: 3", body=b"abc"),
    "unknown-method-body": req(b"BREW /pot HTTP/1.1", b"Host: x", b"Content-Length: 2", body=b"hi") + GET_A,
    "smuggle-cl-te": req(b"POST / HTTP/1.1", b"Host: x", b"Content-Length: 4", b"Transfer-Encoding: chunked",
                         body=b"0\r\n\r\n") + GET_A,
    "smuggle-te-cl": req(b"POST / HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked", b"Content-Length: 40",
                         body=b"0\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"),
    "smuggle-double-cl": req(b"POST / HTTP/1.1", b"Host: x", b"Content-Length: 3", b"Content-Length: 5", body=b"abcde"),
    "smuggle-cl-list": req(b"POST / HTTP/1.1", b"Host: x", b"Content-Length: 3, 3", body=b"abc"),
    "smuggle-te-xchunked": req(b"POST / HTTP/1.1", b"Host: x", b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"),
    "smuggle-te-chunked-identity": req(b"POST / HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked, identity",
                                       body=b"0\r\n\r\n"),
    "smuggle-te-http10": req(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
    "obs-fold": req(b"GET / HTTP/1.1", b"Host: x", b"X-A: a", b" folded"),
    "bare-lf": b"GET / HTTP/1.1\nHost: x\n\n",
    "chunk-size-overflow": req(b"POST / HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked",
                               body=b"fffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
    "trailer-te": req(b"POST / HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked",
                      body=b"0\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n") + GET_A,
    "no-host": req(b"GET / HTTP/1.1"),
    "absolute-form": req(b"GET http://x/a.txt HTTP/1.1", b"Host: x"),
    "nul-in-field": req(b"GET / HTTP/1.1", b"Host: x", b"X: a\x00b"),
    "long-line": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "many-headers": req(b"GET / HTTP/1.1", b"Host: x", *[b"X-%d: v" % i for i in range(110)]),
    "head-with-body": req(b"HEAD /a.txt HTTP/1.1", b"Host: x", b"Content-Length: 3", body=b"abc") + GET_A,
    "leading-crlf": b"\r\n\r\n" + GET_A,
    "dyn-form": req(b"POST /echo/p/q?x=1&y HTTP/1.1", b"Host: x", b"Content-Type: application/x-www-form-urlencoded",
                    b"Content-Length: 11", body=b"a=1&b=%20c&") + GET_A,
    "dyn-json": req(b"POST /echo HTTP/1.1", b"Host: x", b"Content-Type: application/json", b"Content-Length: 16",
                    body=b'{"k": [1, 2.5]}\n'),
    "dyn-multipart": req(b"POST /echo HTTP/1.1", b"Host: x", b"Content-Type: multipart/form-data; boundary=b",
                         b"Transfer-Encoding: chunked",
                         body=b"64\r\n--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n"
                         b"Content-Type: text/plain\r\n\r\nhi\r\n--b--\r\n\r\n0\r\n\r\n") + GET_A,
    "dyn-multipart-too-large": req(b"POST /echo HTTP/1.1", b"Host: x", b"Content-Type: multipart/form-data; boundary=b",
                                   b"Content-Length: 150",
                                   body=(b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n" + b"x" * 150)[:150]),
    "dyn-get": req(b"GET /api/a/../b?q=%41#frag HTTP/1.1", b"Host: x") + req(b"HEAD /api HTTP/1.1", b"Host: x"),
    "garbage": b"\x00\xff\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "get-byteranges": req(b"GET /big.bin HTTP/1.1", b"Host: x", b"Range: bytes=0-9,100-199,-5"),
    "get-if-match": req(b"GET /a.txt HTTP/1.1", b"Host: x", b"If-Match: \"x\", *",
                        b"If-Unmodified-Since: Wed, 01 Jan 2020 00:00:00 GMT"),
}

# Schedule seeds (first two bytes, little-endian): even = plain splits compared with the
# whole run, odd = chaos (timeouts, shutdown, EOF); bit 1 = half-close at the end.
SCHEDULES = [0x0000, 0x0002, 0x1234, 0x5676, 0x0001, 0xBEEE, 0x0A0A, 0x0003]


def connection():
    seeds = {}
    for i, (name, data) in enumerate(CONNECTION.items()):
        seeds[name] = struct.pack("<H", SCHEDULES[i % len(SCHEDULES)]) + data
    return seeds


PATH = {
    "root": b"/",
    "file": b"/a/b/c.txt",
    "folder": b"/a/b/",
    "dots": b"/a/./b/../c",
    "climb": b"/../../../etc/passwd",
    "encoded-dots": b"/%2e%2e/%2E%2E/etc/passwd",
    "mixed-dots": b"/.%2e/x",
    "encoded-slash": b"/a%2fb",
    "encoded-backslash": b"/a%5c..%5cb",
    "backslash": b"/a\\..\\..\\b",
    "nul": b"/a%00b",
    "control": b"/a%0d%0ab",
    "overlong-utf8": b"/%c0%ae%c0%ae/x",
    "bad-percent": b"/a%zz",
    "percent-at-end": b"/a%2",
    "params": b"/a/b;type=a",
    "params-dots": b"/a/..;/b",
    "query": b"/a?b=../../c#frag",
    "double-slash": b"//evil.example/path",
    "backslash-slash": b"/\\evil.example",
    "hidden": b"/.git/config",
    "unicode": b"/caf%C3%A9/\xe2\x82\xac",
    "deep-climb": b"/a/b/c/../../../../../../../x",
    "empty": b"",
    "no-leading-slash": b"a/../../b",
}


def range_seed(length, header):
    return struct.pack("<Q", length) + header


RANGE = {
    "first-100": range_seed(1000, b"bytes=0-99"),
    "open-end": range_seed(1000, b"bytes=500-"),
    "suffix": range_seed(1000, b"bytes=-100"),
    "suffix-larger": range_seed(10, b"bytes=-100"),
    "end-clamped": range_seed(10, b"bytes=5-1000"),
    "unsatisfiable": range_seed(10, b"bytes=10-20"),
    "reversed": range_seed(10, b"bytes=5-2"),
    "list": range_seed(100, b"bytes=0-1, 5-6, -3"),
    "list-first-unsat": range_seed(10, b"bytes=50-60,0-0"),
    "empty-repr": range_seed(0, b"bytes=0-"),
    "empty-suffix": range_seed(0, b"bytes=-5"),
    "zero-suffix": range_seed(10, b"bytes=-0"),
    "other-unit": range_seed(10, b"items=0-1"),
    "no-equals": range_seed(10, b"bytes 0-1"),
    "huge-numbers": range_seed(2**64 - 1, b"bytes=18446744073709551614-18446744073709551615"),
    "overflow": range_seed(100, b"bytes=0-99999999999999999999999"),
    "max-len": range_seed(2**64 - 1, b"bytes=0-"),
    "too-many": range_seed(1000, b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(20))),
    "whitespace": range_seed(100, b" Bytes = 1-2 ,\t3-4"),
    "sign": range_seed(100, b"bytes=+1-2"),
    "coalesced": range_seed(100, b"bytes=0-2,2-3,10-11,12-12"),
    "unordered": range_seed(100, b"bytes=50-59,0-9,-5"),
    "at-cap": range_seed(1000, b"bytes=" + b",".join(b"%d-%d" % (2 * i, 2 * i) for i in range(16))),
    "overlap-killer": range_seed(10, b"bytes=0-,1-,2-,3-"),
}


def etag_seed(content, header):
    return bytes([len(content)]) + content + header


ETAG = {
    "quoted": etag_seed(b"hello", b'"3610a686"'),
    "bare": etag_seed(b"hello", b"3610a686"),
    "weak": etag_seed(b"hello", b'W/"3610a686"'),
    "list": etag_seed(b"hello", b'"aa", W/"bb", 3610a686'),
    "star": etag_seed(b"hello", b"*"),
    "star-suffix": etag_seed(b"hello", b"*x"),
    "unterminated": etag_seed(b"hello", b'"3610a686'),
    "no-match": etag_seed(b"hello", b'"deadbeef"'),
    "empty": etag_seed(b"", b""),
    "commas": etag_seed(b"x", b",,, ,"),
    "weak-prefix-only": etag_seed(b"x", b"W/"),
    "date": etag_seed(b"x", b"Thu, 01 Jan 1970 00:00:00 GMT"),
    "bad-date": etag_seed(b"x", b"Thu, 32 Jan 1970 25:00:00 GMT"),
    "utf8": etag_seed(b"x", '"\u00e9", \u20ac'.encode()),
    "tabs": etag_seed(b"content", b'\t"a"\t,\tW/"b"'),
}

def mp(mode, seed, *parts, boundary=b"b", close=True, prologue=b"", epilogue=b""):
    """A multipart body: each part is (headers, content)."""
    body = prologue
    for i, (headers, content) in enumerate(parts):
        body += (b"--" if i == 0 else b"\r\n--") + boundary + b"\r\n"
        body += b"".join(h + b"\r\n" for h in headers) + b"\r\n" + content
    if close:
        body += (b"\r\n--" if parts else b"--") + boundary + b"--\r\n"
    return bytes([mode, seed]) + body + epilogue


FIELD = [b'Content-Disposition: form-data; name="field"']
FILE = [b'Content-Disposition: form-data; name="up"; filename="a.txt"', b"Content-Type: text/plain"]
WEBKIT = b"----WebKitFormBoundary7MA4YWxkTrZu0gW"

MULTIPART = {
    "one-field": mp(0, 1, (FIELD, b"value")),
    "field-and-file": mp(0, 7, (FIELD, b"v"), (FILE, b"line1\r\nline2\r\n")),
    "webkit-boundary": mp(2, 3, (FIELD, b"x"), (FILE, b"data"), boundary=WEBKIT),
    "boundary-word": mp(1, 9, (FIELD, b"--boundar"), boundary=b"boundary"),
    "quote-boundary": mp(3, 5, (FIELD, b"q"), boundary=b"a-b_c'd"),
    "near-delimiter": mp(0, 11, (FIELD, b"\r\n-\r\n--\r\n--c\r"), (FIELD, b"\r")),
    "empty-content": mp(0, 13, (FIELD, b""), (FILE, b"")),
    "no-parts": mp(0, 2, close=True),
    "unclosed": mp(0, 4, (FIELD, b"abc"), close=False),
    "bad-first-line": bytes([0, 6]) + b"--x\r\n\r\n",
    "no-name": mp(0, 8, ([b"Content-Disposition: form-data"], b"v")),
    "not-form-data": mp(0, 10, ([b'Content-Disposition: attachment; name="a"'], b"v")),
    "part-too-large": mp(4, 12, (FIELD, b"x" * 100)),
    "part-at-limit": mp(4, 14, (FIELD, b"x" * 64)),
    "epilogue-space": mp(0, 15, (FIELD, b"v"), epilogue=b"  \r\n"),
    "epilogue-junk": mp(0, 16, (FIELD, b"v"), epilogue=b"junk"),
    "prologue-junk": mp(0, 17, (FIELD, b"v"), prologue=b"preamble\r\n"),
    "bare-lf": bytes([0, 18]) + b'--b\nContent-Disposition: form-data; name="a"\n\nv\n--b--\n',
    "many-headers": mp(0, 19, ([b"X-%d: v" % i for i in range(40)] + FIELD, b"v")),
    "folded-header": mp(0, 20, ([b"Content-Disposition: form-data;", b' name="a"'], b"v")),
    "filename-quotes": mp(0, 21, ([b'Content-Disposition: form-data; name="a\\"b"; filename="c;d.txt"'], b"v")),
    "delimiter-suffix": mp(0, 22, (FIELD, b"v"), (FIELD, b"w")).replace(b"\r\n--b\r\n", b"\r\n--bx\r\n"),
}

# upstream: selector (bits 0-1 request GET/HEAD/POST/GET 1.0, bit 2 unused, bit 3
# timeout), split seed, then the upstream's answer.
def up(answer, request=0, timeout=False, seed=7):
    return bytes([request | (8 if timeout else 0), seed]) + answer


UPSTREAM = {
    "sized": up(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello"),
    "sized-head": up(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", request=1),
    "chunked": up(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
    "chunked-bad": up(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"),
    "chunked-cut": up(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n50\r\nhello"),
    "until-close": up(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"),
    "until-close-http10-client": up(b"HTTP/1.1 200 OK\r\n\r\nstream", request=3),
    "cut-body": up(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
    "cut-head": up(b"HTTP/1.1 200 OK\r\nContent-Len"),
    "garbage": up(b"NOT HTTP AT ALL\r\n\r\n"),
    "empty": up(b""),
    "interim-then-final": up(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", request=2),
    "no-content": up(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
    "not-modified": up(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
    "two-lengths": up(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
    "both-framings": up(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    "hop-by-hop": up(b"HTTP/1.1 200 OK\r\nConnection: X-A, close\r\nX-A: 1\r\nKeep-Alive: 5\r\nContent-Length: 1\r\n\r\nz"),
    "extra-after-body": up(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nzHTTP/1.1 200 OK\r\n\r\n"),
    "oversize-head": up(b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n"),
    "stalled-timeout": up(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", timeout=True),
    "head-timeout": up(b"HTTP/1.1 20", timeout=True),
    "bare-lf": up(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    "both-framings-length-short": up(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    "head-request-garbage": up(b"NOT HTTP AT ALL\r\n\r\n", request=1),
    "status-out-of-range": up(b"HTTP/1.1 735 Odd\r\nContent-Length: 0\r\n\r\n"),
    "reason-missing": up(b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", seed=1),
}

TARGETS = {
    "connection": connection(),
    "upstream": UPSTREAM,
    "path": PATH,
    "range": RANGE,
    "etag_match": ETAG,
    "multipart": MULTIPART,
}


def main():
    for target, seeds in TARGETS.items():
        out = ROOT / target
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for name, data in seeds.items():
            (out / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
