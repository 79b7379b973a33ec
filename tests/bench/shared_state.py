#!/usr/bin/env python3
"""Shared-state row of tests/bench/run (scenario j): the cluster example with its state in
the process and in a real redis-server on loopback, side by side.

  token read-modify-write: THREADS keep-alive clients POST /api/count/bench for DURATION s;
      rate, median and p99 latency, and whether the final count equals the 200 answers;
  worker start->result: JOBS jobs of 0 s, one after the other: from sending `start` to
      holding the result (the start answer carries it after the server's 100 ms wait);
  worker get: a `get` of a running task, round trip.

Usage: shared_state.py CLUSTER_BINARY PORT_BASE DURATION RESULTS_JSON
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

THREADS = 8
JOBS = 40
GETS = 200


def wait_port(port, proc, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process for port {port} exited")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def post(conn, path, body):
    data = json.dumps(body)
    conn.request("POST", path, data, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def token_rmw(port, duration):
    latencies, oks = [], [0]
    lock = threading.Lock()
    stop = time.time() + duration

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, ok = [], 0
        while time.time() < stop:
            t0 = time.perf_counter()
            status, _ = post(conn, "/api/count/bench", {})
            mine.append(time.perf_counter() - t0)
            ok += status == 200
        with lock:
            latencies.extend(mine)
            oks[0] += ok

    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/count/bench")
    final = json.loads(conn.getresponse().read())["count"]
    return {
        "rate": len(latencies) / elapsed,
        "p50_ms": 1000 * quantile(latencies, 0.5),
        "p99_ms": 1000 * quantile(latencies, 0.99),
        "count_matches": final == oks[0],
    }


def worker(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    starts = []
    for i in range(JOBS):
        t0 = time.perf_counter()
        status, body = post(conn, "/api/sleep", {"action": "start", "payload": {"seconds": 0, "echo": i}})
        reply = json.loads(body)
        while status == 200 and not reply["done"]:
            status, body = post(conn, "/api/sleep", {"action": "get", "token": reply["token"]})
            reply = json.loads(body)
        starts.append(time.perf_counter() - t0)
    status, body = post(conn, "/api/sleep", {"action": "start", "payload": {"seconds": 60}})
    token = json.loads(body)["token"]
    gets = []
    for _ in range(GETS):
        t0 = time.perf_counter()
        post(conn, "/api/sleep", {"action": "get", "token": token})
        gets.append(time.perf_counter() - t0)
    post(conn, "/api/sleep", {"action": "stop", "token": token})
    return {
        "start_result_p50_ms": 1000 * quantile(starts, 0.5),
        "start_result_p99_ms": 1000 * quantile(starts, 0.99),
        "get_p50_ms": 1000 * quantile(gets, 0.5),
        "get_p99_ms": 1000 * quantile(gets, 0.99),
    }


def main():
    binary, port_base, duration, results = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    redis_port, mem_port, shared_port = port_base, port_base + 1, port_base + 2
    work = tempfile.mkdtemp(prefix="qs-bench-redis-")
    procs = []
    try:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", work],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(redis)
        wait_port(redis_port, redis)
        rows = {}
        for name, port, extra in [("memory", mem_port, []),
                                  ("redis", shared_port, ["--redis", f"redis://127.0.0.1:{redis_port}"])]:
            proc = subprocess.Popen([binary, "--port", str(port)] + extra, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            wait_port(port, proc)
            rows[name] = {"token": token_rmw(port, duration), "worker": worker(port)}
        m, r = rows["memory"], rows["redis"]
        print("\nj: shared state (cluster example), in-memory vs Redis on loopback")
        print(f"{'':34} {'memory':>12} {'redis':>12}")
        for label, key, sub, unit in [
            ("token RMW rate (8 clients)", "token", "rate", "req/s"),
            ("token RMW p50", "token", "p50_ms", "ms"),
            ("token RMW p99", "token", "p99_ms", "ms"),
            ("worker start->result p50", "worker", "start_result_p50_ms", "ms"),
            ("worker start->result p99", "worker", "start_result_p99_ms", "ms"),
            ("worker get round trip p50", "worker", "get_p50_ms", "ms"),
            ("worker get round trip p99", "worker", "get_p99_ms", "ms"),
        ]:
            print(f"{label + ' (' + unit + ')':34} {m[key][sub]:12.2f} {r[key][sub]:12.2f}")
        print(f"final count equals the 200 answers: memory {m['token']['count_matches']}, "
              f"redis {r['token']['count_matches']}")
        with open(results, "w") as out:
            json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "duration_s": duration, "threads": THREADS, "jobs": JOBS, "rows": rows},
                      out, indent=2)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
