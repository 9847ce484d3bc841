"""Would prompt lookup (drafting an answer's next tokens by copying them from the passage) pay
on CPU? A measurement from components, before anyone builds it into the engine.

1. The engine answers a workload on a GGUF file (llama.cpp, one text at a time, every type of
   the text decoded together), recording each answer's tokens and its measured decode time.
2. What one llama.cpp decode call costs as a function of the tokens it carries (``rows`` branches
   x ``1 + draft`` tokens each, logits for all of them, as verification needs) is timed on the
   same model and threads, after a real prefill; a least-squares line ``a + b * tokens``.
3. The engine's schedule is replayed per text: without drafts (which must reproduce the measured
   decode time: the check of the cost model), then with drafts at each setting. A draft is the
   ``k`` tokens that follow the last occurrence of the answer's last ``n`` tokens (longest ``n``
   first) in the prompt and the answer so far; greedy verification accepts its longest prefix
   that equals the answer's own next tokens, so the answers are unchanged by construction.

    python -m uner.bench.prompt_lookup MODEL.gguf -d ../shared/data/crossner_ai/CrossNER_AI.json \\
        --limit 120 --threads 2 -o bench/reports/NAME/prompt_lookup.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np

from uner import load
from uner.atomic import write_text_atomic
from uner.bench.workload import sample_arguments, sample_texts
from uner.engine import Job, _Admission

SETTINGS = [(n, k) for n in (1, 2, 3) for k in (1, 2, 4, 8)]  # (longest n-gram matched, draft tokens)


def draft(context: Sequence[int], ngram: int, size: int) -> list[int]:
    """Up to ``size`` tokens that followed the last earlier occurrence of the context's last
    ``n`` tokens (``n`` from ``ngram`` down to 1); empty when none occurs."""
    for n in range(min(ngram, len(context) - 1), 0, -1):
        tail = list(context[-n:])
        for start in range(len(context) - n - 1, -1, -1):
            if list(context[start : start + n]) == tail:
                return list(context[start + n : start + n + size])
    return []


def branch_schedule(prompt: Sequence[int], answer: Sequence[int], ends_with_eos: bool, ngram: int, size: int):
    """Tokens fed at each decode step of one answer (``size`` 0: no drafts). The first answer
    token comes from the prefill; a step feeds the last known token and its draft, and learns
    the accepted draft tokens plus one more; the answer is done once its last token (and the
    EOS after it, when it ended on one) is known."""
    needed = len(answer) + (1 if ends_with_eos else 0)
    known, fed = 1, []
    while known < needed:
        guess = draft([*prompt, *answer[:known]], ngram, size) if size else []
        accepted = 0
        for token, actual in zip(guess, answer[known:]):
            if token != actual:
                break
            accepted += 1
        fed.append(1 + len(guess))
        known += accepted + 1
    return fed


def text_steps(prompts, answers, ends, ngram: int, size: int) -> list[int]:
    """Tokens per decode step of one text whose branches run together until the last is done."""
    schedules = [branch_schedule(p, a, e, ngram, size) for p, a, e in zip(prompts, answers, ends)]
    length = max((len(s) for s in schedules), default=0)
    return [sum(s[i] for s in schedules if i < len(s)) for i in range(length)]


def time_decode_calls(ner, prompts: Sequence[Sequence[int]], rows: Sequence[int], drafts: Sequence[int], repeats=5):
    """(tokens, seconds) of decode calls of ``r`` branches x ``1 + d`` tokens after a real prefill."""
    llama = ner._llama_cpp
    points = []
    for count in rows:
        pool = ner.branch_pool()
        admission = _Admission(0, Job(list(prompts[:count])), ner.prompt_stem())
        branches, _ = pool.add(admission.prefix, admission.suffixes, admission.stem)
        for extra in drafts:
            tokens, positions, seqs = [], [], []
            for seq in branches:
                start = pool._position[seq]
                tokens += [42] * (1 + extra)
                positions += range(start, start + 1 + extra)
                seqs += [seq] * (1 + extra)
            for _ in range(repeats):
                began = time.perf_counter()
                ner.decode_tokens(tokens, positions, seqs, [True] * len(tokens))
                points.append((len(tokens), time.perf_counter() - began))
                for seq in branches:  # roll the branches back for the next call
                    llama.llama_memory_seq_rm(ner._memory, seq, pool._position[seq], -1)
        pool.reset()
    return points


def fit_line(points) -> tuple[float, float, float]:
    """Least squares ``seconds = a + b * tokens``; and the largest relative residual."""
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points])
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b), float(np.max(np.abs(a + b * x - y) / y))


def main(argv: Sequence[str] | None = None) -> None:
    args = sample_arguments(__doc__.split("\n\n")[0], "a GGUF file").parse_args(argv)
    jobs_texts = sample_texts(args.data, args.limit)
    with load(args.model, n_threads=args.threads) as ner:
        jobs = [Job([ner.prompt_ids(text, label) for label in labels], text) for text, labels in jobs_texts]
        answers = dict(ner.generate_jobs(jobs))
        stats = ner.stats
        ends = {i: [ner.stop_reason(ids) == "eos" for ids in answers[i]] for i in answers}
        points = time_decode_calls(ner, jobs[0].prompts, rows=(1, 2, 4, 8, 12), drafts=(0, 1, 2, 4, 8))
    a, b, worst = fit_line(points)
    results = {
        "model": args.model,
        "texts": len(jobs),
        "queries": sum(len(j.prompts) for j in jobs),
        "measured": {"prefill_seconds": stats.prefill_seconds, "decode_seconds": stats.step_seconds},
        "measured_decode_steps": len(stats.tokens_per_step),
        "cost_model": {"a_seconds": a, "b_seconds_per_token": b, "worst_relative_residual": worst},
        "settings": [],
    }
    for ngram, size in [(0, 0), *SETTINGS]:
        steps = [t for i, job in enumerate(jobs) for t in text_steps(job.prompts, answers[i], ends[i], ngram, size)]
        results["settings"].append(
            {
                "ngram": ngram,
                "draft": size,
                "steps": len(steps),
                "tokens_fed": sum(steps),
                "modelled_decode_seconds": len(steps) * a + b * sum(steps),
            }
        )
    write_text_atomic(args.out, json.dumps(results, indent=1) + "\n")
    base = results["settings"][0]["modelled_decode_seconds"]
    print(
        f"measured decode {stats.step_seconds:.2f} s in {len(stats.tokens_per_step)} steps, "
        f"prefill {stats.prefill_seconds:.2f} s"
    )
    print(f"cost model: {1000 * a:.2f} ms + {1000 * b:.3f} ms/token (worst residual {100 * worst:.0f} %)")
    for entry in results["settings"]:
        ratio = entry["modelled_decode_seconds"] / base
        print(
            f"n={entry['ngram']} k={entry['draft']}: {entry['steps']} steps, {entry['tokens_fed']} tokens, "
            f"decode {entry['modelled_decode_seconds']:.2f} s ({ratio:.2f}x)"
        )


if __name__ == "__main__":
    main()
