"""Throughput of ``uner serve`` with 1, 4 and 16 concurrent clients against the same texts sent
one after another, side by side in one run: queries/s, p50/p95 latency, identical answers.

Each request is one text with its own entity types (the bench's sample of the eval files); the
clients share one list of requests, each sending its next as soon as its last was answered.
Modes are interleaved within each repeat and the best repeat of each is kept (a shared VM's
noise reaches 25 %). Nothing here is a test: the figures go to ``--out``.

    python -m uner.bench.serve_throughput out/uniner-smol-135m.Q4_K_M.gguf \\
        -d ../shared/data/crossner_ai/CrossNER_AI.json --limit 60 --out bench/reports/serve-throughput
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from uner.atomic import write_text_atomic
from uner.bench.server_process import ServerProcess
from uner.bench.workload import sample_texts


def _post(client, url: str, text: str, labels: list[str]) -> tuple[dict, float]:
    started = time.perf_counter()
    response = client.post(f"{url}/v1/extract", json={"text": text, "labels": labels}, timeout=600)
    response.raise_for_status()
    return response.json()["results"][0], time.perf_counter() - started


def run_clients(url: str, requests: Sequence[tuple[str, list[str]]], clients: int) -> dict:
    """Send every request with ``clients`` concurrent clients: wall time, latencies, answers."""
    import httpx

    answers: list[dict | None] = [None] * len(requests)
    latencies: list[float] = [0.0] * len(requests)
    next_index = iter(range(len(requests)))
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client() as client:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                answers[index], latencies[index] = _post(client, url, *requests[index])

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"wall_s": time.perf_counter() - started, "latencies": latencies, "answers": answers}


_ENGINE = ("prefill_seconds", "decode_seconds", "decode_steps", "decode_rows")


def engine_totals(url: str) -> dict[str, float]:
    """The server's engine counters from ``/metrics``."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = dict(re.findall(r"^uner_(\w+)_total (\S+)$", text, re.MULTILINE))
    return {key: float(found[key]) for key in _ENGINE}


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summarize(runs: dict[str, dict], queries: int) -> list[dict]:
    """One row per mode: queries/s, its ratio to sequential, p50/p95 latency, identical answers."""
    baseline = runs["sequential"]
    rows = []
    for mode, run in runs.items():
        same = sum(a == b for a, b in zip(run["answers"], baseline["answers"]))
        engine = run["engine"]
        rows.append(
            {
                "mode": mode,
                "queries_per_s": queries / run["wall_s"],
                "x_sequential": baseline["wall_s"] / run["wall_s"],
                "p50_s": statistics.median(run["latencies"]),
                "p95_s": _percentile(run["latencies"], 0.95),
                "wall_s": run["wall_s"],
                "identical_answers": same,
                "requests": len(run["answers"]),
                "prefill_s": engine["prefill_seconds"],
                "decode_s": engine["decode_seconds"],
                "rows_per_step": engine["decode_rows"] / max(engine["decode_steps"], 1),
            }
        )
    return rows


def measure(url: str, requests, clients: Sequence[int], repeats: int) -> dict[str, dict]:
    """The best repeat (shortest wall) of each mode, modes interleaved within a repeat."""
    best: dict[str, dict] = {}
    for _ in range(repeats):
        for mode, count in [("sequential", 1), *((f"{c} clients", c) for c in clients)]:
            before = engine_totals(url)
            run = run_clients(url, requests, count)
            after = engine_totals(url)
            run["engine"] = {key: after[key] - before[key] for key in _ENGINE}
            if mode not in best or run["wall_s"] < best[mode]["wall_s"]:
                best[mode] = run
    return best


def report(rows: list[dict], setup: dict) -> str:
    lines = [
        "# uner serve: concurrent clients against sequential requests",
        "",
        f"Model `{setup['model']}`, server arguments `{' '.join(setup['server_args']) or '(none)'}`, "
        f"{setup['requests']} requests (one text each, {setup['queries']} queries), best of {setup['repeats']}.",
        "",
        "The engine's own split (from `/metrics`): prefill and decode seconds, rows per decode step.",
        "",
        "| mode | queries/s | × sequential | p50 s | p95 s | identical answers | prefill s | decode s | rows/step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['mode']} | {row['queries_per_s']:.2f} | {row['x_sequential']:.2f} | {row['p50_s']:.3f} | "
            f"{row['p95_s']:.3f} | {row['identical_answers']}/{row['requests']} | {row['prefill_s']:.2f} | "
            f"{row['decode_s']:.2f} | {row['rows_per_step']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="what uner serve --model takes")
    parser.add_argument("-d", "--data", type=Path, action="append", required=True, help="UniNER eval JSON files")
    parser.add_argument("--limit", type=int, default=60, help="queries per data file (whole texts)")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--server-arg", action="append", default=[], help="passed to uner serve (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    requests = sample_texts(args.data, args.limit)
    queries = sum(len(labels) for _, labels in requests)
    server_args = ["--threads", str(args.threads), "--quiet", *args.server_arg]
    with ServerProcess(args.model, *server_args) as server:
        url = server.wait_ready()
        run_clients(url, requests[:2], 1)  # warm-up: the prompt stem's KV, the first allocations
        runs = measure(url, requests, [int(c) for c in args.clients.split(",")], args.repeats)
    rows = summarize(runs, queries)
    setup = {
        "model": str(args.model),
        "server_args": args.server_arg,
        "requests": len(requests),
        "queries": queries,
        "repeats": args.repeats,
        "threads": args.threads,
        "data": [str(path) for path in args.data],
        "limit": args.limit,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "results.json", json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
    write_text_atomic(args.out / "report.md", report(rows, setup))
    print(report(rows, setup))


if __name__ == "__main__":
    main()
