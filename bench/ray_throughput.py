"""Documents/s of ``uner extract --ray`` with 1 and 2 workers against single-process
``uner extract --output``, side by side in one run, on the same documents: same answers?

Every mode is a fresh ``uner extract`` process, timed from launch to exit as a user would see it
(a local Ray's start, the model's load in each worker, the write). A second, two-document run of
each mode measures that fixed cost, so the report also gives the steady rate of a long corpus:
``(documents - 2) / (wall - fixed wall)``. Memory: the peak summed PSS of the process tree (the
CLI, Ray's GCS and raylet, its workers), sampled every half second; PSS, because two workers
share the pages of one memory-mapped GGUF. Modes are interleaved within each repeat and the best
repeat kept. The documents copy texts of research-licence data: they go to ``--work`` (default a
temporary folder), never into the repository.

    python -m uner.bench.ray_throughput out/uniner-smol-135m.Q4_K_M.gguf \\
        -d ../shared/data/crossner_ai/CrossNER_AI.json --documents 120 --out bench/reports/ray-throughput
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from uner.atomic import write_text_atomic
from uner.eval_data import read_queries

#: mode -> the arguments it adds to ``uner extract`` (``-t``: threads, ``-w``: Ray workers);
#: the single-process modes write one JSONL file, the Ray ones a folder of Parquet parts
MODES = {
    "single-t2": ["--threads", "2"],
    "single-t1": ["--threads", "1"],
    "ray-w1-t2": ["--ray", "--workers", "1", "--threads-per-worker", "2"],
    "ray-w2-t1": ["--ray", "--workers", "2", "--threads-per-worker", "1"],
}
FIXED_DOCUMENTS = 2


def write_corpus(paths: Sequence[Path], documents: int, folder: Path) -> tuple[Path, list[str]]:
    """The first ``documents`` texts of the eval files as ``{id, text}`` JSON lines, and every
    entity type of those files (one label set for the corpus, as ``uner extract`` takes)."""
    texts: dict[str, None] = {}
    labels: dict[str, None] = {}
    for path in paths:
        for query in read_queries(path):
            labels.setdefault(query.label)
            if len(texts) < documents:
                texts.setdefault(query.text)
    if len(texts) < documents:
        raise SystemExit(f"Error: the data files hold {len(texts)} texts, fewer than --documents {documents}")
    corpus = folder / "docs.jsonl"
    lines = (json.dumps({"id": f"doc-{i:05d}", "text": text}) for i, text in enumerate(texts))
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return corpus, list(labels)


#: where a process's CPU time is counted, by what its command line says it is
CPU_GROUPS = ("driver", "model workers", "other Ray workers", "Ray services")


def _group(process, root: int) -> str:
    if process.pid == root:
        return "driver"
    command = " ".join(process.cmdline())
    if "DocumentReader" in command:
        return "model workers"
    if command.startswith("ray::") or "default_worker.py" in command:
        return "other Ray workers"  # reading files, idle
    return "Ray services"  # gcs_server, raylet, log monitor...


def _sample_tree(pid: int, cpu: dict[int, tuple[str, float]]) -> dict[str, int]:
    """PSS (bytes) of ``pid`` and its descendants by group (RSS where PSS cannot be read); each
    one's group and CPU seconds so far go into ``cpu``."""
    import psutil

    pss = dict.fromkeys(CPU_GROUPS, 0)
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return pss
    for process in processes:
        try:
            info = process.memory_full_info()
            times = process.cpu_times()
            group = _group(process, pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cpu[process.pid] = (group, times.user + times.system)
        pss[group] += getattr(info, "pss", info.rss)
    return pss


def run_mode(command: list[str]) -> dict:
    """Run one ``uner extract``: wall seconds, the peak PSS of its process tree (and of each
    group of its processes) and each group's CPU seconds (sampled every half second, so a
    process's last half second may be missed)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = dict.fromkeys([*CPU_GROUPS, "all"], 0)
    cpu: dict[int, tuple[str, float]] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            pss = _sample_tree(process.pid, cpu)
            for group, size in [*pss.items(), ("all", sum(pss.values()))]:
                peak[group] = max(peak[group], size)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"Error: {' '.join(command)} exited with {process.returncode}:\n{stderr[-2000:]}")
    cpu_s = {group: sum(seconds for g, seconds in cpu.values() if g == group) for group in CPU_GROUPS}
    peaks_mb = {group: size / 2**20 for group, size in peak.items()}
    return {"wall_s": wall, "peak_pss_mb": peaks_mb.pop("all"), "group_pss_mb": peaks_mb, "cpu_s": cpu_s}


def extract_command(model: str, corpus: Path, labels: list[str], out: Path, mode_args: list[str]) -> list[str]:
    output = out if "--ray" in mode_args else out / "out.jsonl"
    return [
        *(sys.executable, "-m", "uner.cli", "extract", "-m", model, "-l", ",".join(labels)),
        *("-i", str(corpus), "-o", str(output), "-q", *mode_args),
    ]


def read_answers(out: Path) -> dict:
    """``{id: entities}`` of a run's output: one JSONL file, or a folder of Parquet parts."""
    import pyarrow.parquet as pq

    single = out / "out.jsonl"
    if single.is_file():
        return {row["id"]: row["entities"] for row in map(json.loads, single.read_text().splitlines())}
    rows = pq.read_table(sorted(out.glob("part-*.parquet"))).to_pylist()
    answers = {row["id"]: row["entities"] for row in rows}
    if len(answers) != len(rows):
        raise SystemExit(f"Error: {out} holds a document twice")
    return answers


def measure(model: str, corpus: Path, fixed_corpus: Path, labels, modes, repeats: int, work: Path) -> dict:
    """Per mode: the best full run, its fixed-cost run, and its answers."""
    results: dict[str, dict] = {}
    for repeat in range(repeats):
        for index, mode in enumerate(modes):
            out = work / f"run-{repeat}-{index}"
            run = run_mode(extract_command(model, corpus, labels, out, MODES[mode]))
            run["answers"] = read_answers(out)
            shutil.rmtree(out)
            best = results.get(mode)
            if best is None or run["wall_s"] < best["wall_s"]:
                results[mode] = run
    for index, mode in enumerate(modes):
        out = work / f"fixed-{index}"
        results[mode]["fixed"] = run_mode(extract_command(model, fixed_corpus, labels, out, MODES[mode]))
        shutil.rmtree(out)
    return results


def _steady_rate(run: dict, documents: int) -> float:
    """Documents/s once the fixed cost (the fixed-cost run's wall time) is paid."""
    return (documents - FIXED_DOCUMENTS) / max(run["wall_s"] - run["fixed"]["wall_s"], 1e-9)


def summarize(results: dict[str, dict], documents: int) -> list[dict]:
    baseline_mode = next(iter(results))
    baseline = results[baseline_mode]
    base_steady = _steady_rate(baseline, documents)
    rows = []
    for mode, run in results.items():
        steady = _steady_rate(run, documents)
        same = sum(run["answers"].get(doc_id) == entities for doc_id, entities in baseline["answers"].items())
        rows.append(
            {
                "mode": mode,
                "wall_s": run["wall_s"],
                "documents_per_s": documents / run["wall_s"],
                "x_baseline": baseline["wall_s"] / run["wall_s"],
                "fixed_s": run["fixed"]["wall_s"],
                "steady_documents_per_s": steady,
                "steady_x_baseline": steady / base_steady,
                "peak_pss_mb": max(run["peak_pss_mb"], run["fixed"]["peak_pss_mb"]),
                "cpu_s": run["cpu_s"],
                "group_pss_mb": run["group_pss_mb"],
                "identical_documents": same,
                "documents": documents,
                "written": len(run["answers"]),
            }
        )
    return rows


def report(rows: list[dict], setup: dict) -> str:
    lines = [
        "# uner extract --ray against single-process uner extract",
        "",
        f"Model `{setup['model']}`, {setup['documents']} documents x {len(setup['labels'])} entity types "
        f"({', '.join(Path(d).name for d in setup['data'])}), best of {setup['repeats']}, on this machine "
        f"({setup['cpus']} CPUs). Ratios against `{rows[0]['mode']}`; identical: the same entities per "
        f"document as it. Fixed: a {FIXED_DOCUMENTS}-document run (start, model load, write); steady: "
        "the rate once that is paid.",
        "",
        "| mode | wall s | docs/s | × | fixed s | steady docs/s | steady × | peak PSS MiB | identical |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['mode']} | {row['wall_s']:.1f} | {row['documents_per_s']:.2f} | {row['x_baseline']:.2f} | "
            f"{row['fixed_s']:.1f} | {row['steady_documents_per_s']:.2f} | {row['steady_x_baseline']:.2f} | "
            f"{row['peak_pss_mb']:.0f} | {row['identical_documents']}/{row['documents']} |"
        )
    lines += cpu_table(rows, setup["cpus"])
    return "\n".join(lines) + "\n"


def cpu_table(rows: list[dict], cpus: int) -> list[str]:
    """Where the CPU and memory went in each mode's full run, by group of processes: CPU
    seconds, all of them as a share of what the machine's cores could give over the run, and
    each group's peak PSS."""
    lines = [
        "",
        "The full run by process group (sampled every 0.5 s): CPU seconds; busy: all of them over "
        f"wall x {cpus} cores; then each group's peak PSS (MiB).",
        "",
        f"| mode | {' | '.join(CPU_GROUPS)} | busy | {' | '.join(f'{g} MiB' for g in CPU_GROUPS)} |",
        "|---|" + "---|" * (2 * len(CPU_GROUPS) + 1),
    ]
    for row in rows:
        spent = [row["cpu_s"][group] for group in CPU_GROUPS]
        busy = sum(spent) / (row["wall_s"] * cpus)
        memory = " | ".join(f"{row['group_pss_mb'][group]:.0f}" for group in CPU_GROUPS)
        lines.append(f"| {row['mode']} | {' | '.join(f'{s:.1f}' for s in spent)} | {busy:.0%} | {memory} |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="what uner extract --model takes (a GGUF file or an ONNX folder)")
    parser.add_argument("-d", "--data", type=Path, action="append", required=True, help="UniNER eval JSON files")
    parser.add_argument("--documents", type=int, default=120)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, the first the baseline")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", type=Path, help="where the documents and outputs go (default: a temporary folder)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    modes = [mode.strip() for mode in args.modes.split(",")]
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        raise SystemExit(f"Error: unknown mode {unknown[0]!r}; expected among: {', '.join(MODES)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="uner-ray-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus, labels = write_corpus(args.data, args.documents, work)
    fixed_corpus = work / "fixed.jsonl"
    fixed_corpus.write_text("".join(corpus.read_text().splitlines(True)[:FIXED_DOCUMENTS]))
    results = measure(args.model, corpus, fixed_corpus, labels, modes, args.repeats, work)
    rows = summarize(results, args.documents)
    setup = {
        "model": str(args.model),
        "documents": args.documents,
        "labels": labels,
        "data": [str(path) for path in args.data],
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "modes": {mode: MODES[mode] for mode in modes},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "results.json", json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
    write_text_atomic(args.out / "report.md", report(rows, setup))
    print(report(rows, setup))


if __name__ == "__main__":
    main()
