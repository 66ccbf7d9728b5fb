#!/usr/bin/env python3
"""Load generator for scripts/bench/serve.sh: streams /v1/completions from OpenAI-compatible
servers at several concurrency levels and reports aggregate generated tokens/s, time to first
token and inter-token latency (p50/p99), one JSON line per (server, concurrency, round).

Standard library only (http.client in threads), so the same client measures every server.
Each stream sends `requests` completions in a row (greedy, a fixed max_tokens with end of
generation suppressed, so every request generates exactly max_tokens tokens); a token's arrival is
the arrival of its SSE chunk. Rounds alternate the servers so drift hits both alike.

usage: serve_bench.py --server NAME=URL[,extra-json] ... --concurrency 1,4,16 --rounds R
                      --max-tokens N --requests K
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a steam engine works, step by step.",
    "Describe a walk through a busy market in the early morning.",
    "List the planets of the solar system and one fact about each.",
]


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def one_request(url, body, timeout):
    """Streams one completion; returns (start, [arrival time of each content chunk], usage)."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    start = time.perf_counter()
    conn.request("POST", u.path.rstrip("/") + "/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{url}: HTTP {resp.status}: {resp.read()[:300]!r}")
    arrivals, usage = [], None
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for ch in chunk.get("choices", []):
            if ch.get("text"):
                arrivals.append(time.perf_counter())
    conn.close()
    return start, arrivals, usage


def run_level(url, extra, concurrency, requests, max_tokens, timeout):
    results, errors = [], []
    lock = threading.Lock()

    def stream(i):
        for k in range(requests):
            body = {"prompt": PROMPTS[(i + k) % len(PROMPTS)], "max_tokens": max_tokens,
                    "temperature": 0, "stream": True}
            body.update(extra)
            try:
                r = one_request(url, body, timeout)
            except Exception as e:  # reported, and the level fails
                with lock:
                    errors.append(str(e))
                return
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=stream, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(errors[0])
    ttft, itl, tokens = [], [], 0
    for start, arrivals, usage in results:
        if not arrivals:
            continue
        tokens += usage["completion_tokens"] if usage else len(arrivals)
        ttft.append(arrivals[0] - start)
        itl.extend(b - a for a, b in zip(arrivals, arrivals[1:]))
    return {"concurrency": concurrency, "requests": len(results), "tokens": tokens,
            "wall_s": round(wall, 3), "tok_s": round(tokens / wall, 2),
            "ttft_p50_ms": round(1000 * percentile(ttft, 50), 1),
            "ttft_p99_ms": round(1000 * percentile(ttft, 99), 1),
            "itl_p50_ms": round(1000 * percentile(itl, 50), 1),
            "itl_p99_ms": round(1000 * percentile(itl, 99), 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", action="append", required=True,
                    help="NAME=URL or NAME=URL,{extra json fields for every request}")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--requests", type=int, default=2, help="requests per stream per level")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    servers = []
    for s in a.server:
        name, rest = s.split("=", 1)
        url, _, extra = rest.partition(",")
        servers.append((name, url, json.loads(extra) if extra else {}))
    levels = [int(x) for x in a.concurrency.split(",")]
    rows = []
    for rnd in range(a.rounds):
        for name, url, extra in servers:
            for c in levels:
                r = run_level(url, extra, c, a.requests, a.max_tokens, a.timeout)
                r.update({"server": name, "round": rnd})
                want = c * a.requests * a.max_tokens
                if r["tokens"] != want:
                    print(f"warning: {name} at {c} streams generated {r['tokens']} tokens, "
                          f"expected {want}", file=sys.stderr, flush=True)
                print(json.dumps(r), flush=True)
                rows.append(r)
    # Medians over rounds, as a Markdown table, with anvil/llama.cpp ratios when both ran.
    print()
    print("| server | streams | tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |")
    print("|---|---|---|---|---|---|---|")
    med = {}
    for name, _, _ in servers:
        for c in levels:
            sel = [r for r in rows if r["server"] == name and r["concurrency"] == c]
            m = {k: statistics.median(r[k] for r in sel)
                 for k in ("tok_s", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")}
            med[(name, c)] = m
            print(f"| {name} | {c} | {m['tok_s']:.1f} | {m['ttft_p50_ms']:.0f} | "
                  f"{m['ttft_p99_ms']:.0f} | {m['itl_p50_ms']:.0f} | {m['itl_p99_ms']:.0f} |")
    names = [s[0] for s in servers]
    if len(names) >= 2:
        a_name, b_name = names[0], names[1]
        print()
        for c in levels:
            x, y = med[(a_name, c)], med[(b_name, c)]
            print(f"streams {c}: {a_name}/{b_name} throughput {x['tok_s'] / y['tok_s']:.2f}x, "
                  f"ITL p99 {x['itl_p99_ms']:.0f} vs {y['itl_p99_ms']:.0f} ms; "
                  f"{a_name} vs its 1-stream rate {x['tok_s'] / med[(a_name, levels[0])]['tok_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
