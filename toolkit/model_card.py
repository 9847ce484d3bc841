"""The Hub model card (README.md) of a published set of variants, from its variant index."""

from __future__ import annotations

from uner.base import DEFAULT_MAX_NEW_TOKENS
from uner.toolkit.calibration import DEFAULT_TOKENS
from uner.toolkit.gates import RULE, with_interval

_TAGS = ["ner", "token-classification", "universal-ner", "uner-toolkit"]
_EXAMPLE_TEXT = "Barack Obama visited Paris with Angela Merkel."


def _size(num: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num < 1024 or unit == "GB":
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    return f"{num:.1f} GB"


def _prompt(index: dict) -> str:
    """The template with the model's own end-of-sequence token where UniNER's ``</s>`` stands."""
    return index["prompt_template"].replace("</s>", index.get("eos_token") or "</s>")


def _front_matter(index: dict, formats: set[str]) -> str:
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        license=index["license"],
        base_model=index["base_model"],
        base_model_relation="quantized",
        pipeline_tag="token-classification",
        language=["en"],
        tags=sorted(formats) + _TAGS,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def _bits(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _variant_rows(index: dict) -> list[str]:
    rows = [
        "| variant | format | path | size | bits/weight | sha256 | F1 | ΔF1 | queries | max drop | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in index["variants"].items():
        size = sum(index["files"][f]["size"] for f in entry["files"])
        main = (
            entry["path"]
            if entry["path"] in index["files"]
            else max(entry["files"], key=lambda f: index["files"][f]["size"])
        )
        digest = index["files"][main]["sha256"]
        bench = entry.get("bench") or {}
        f1 = delta = "–"
        if bench:
            f1 = with_interval(bench["f1"], bench.get("f1_ci95"), ".2f", ".1f")
            delta = with_interval(bench["delta_f1"], bench.get("delta_f1_ci95"), "+.2f")
        rows.append(
            f"| `{name}` | {entry['format']} | `{entry['path']}` | {_size(size)} "
            f"| {_bits(bench.get('bits_per_weight'))} | `{digest[:16]}…` | {f1} | {delta} "
            f"| {bench.get('queries', '–')} | {entry.get('max_f1_drop', '–')} | {entry.get('status', 'unchecked')} |"
        )
    return rows


def _bench_line(index: dict) -> str:
    benches = [e["bench"] for e in index["variants"].values() if e.get("bench")]
    if not benches:
        return "These variants were not benched (`check: unchecked`)."
    first = benches[0]
    data = ", ".join(p.rsplit("/", 1)[-1] for p in first["settings"]["data"])
    return (
        f"F1: official UniNER metric (micro F1 over queries) on whole texts sampled from {data}; "
        f"ΔF1 against the torch reference ({first['reference_f1']:.2f} F1, same queries); in brackets, 95 % "
        f"intervals. {RULE} Full sha256 of every file: `manifest.json`."
    )


def _imatrix_lines(index: dict) -> list[str]:
    record = index.get("imatrix")
    if not record:
        return []
    weighed = [n for n, e in index["variants"].items() if e.get("build", {}).get("imatrix")]
    return [
        f"Importance matrix: {', '.join(f'`{n}`' for n in weighed)} weigh their rounding by an importance matrix "
        f"measured on {record['tokens']:,} tokens of UniNER conversations from {', '.join(record['datasets'])} "
        f"(training splits; the bench files stay unseen), sha256 `{record['sha256'][:16]}…`.",
        "",
    ]


def _gptq_lines(index: dict) -> list[str]:
    lines = []
    for name, entry in index["variants"].items():
        options = entry.get("build", {}).get("quantization") or {}
        if options.get("gptq_data"):
            extra = f", {', '.join(options['int8_projections'])} at 8 bits" if options.get("int8_projections") else ""
            lines.append(
                f"GPTQ: `{name}` rounds its 4-bit weights by GPTQ, with each layer's input Hessian measured on "
                f"{options.get('gptq_tokens', DEFAULT_TOKENS):,} tokens of UniNER conversations from "
                f"{', '.join(options['gptq_data'])} (training splits; the bench files stay unseen){extra}."
            )
    return [*lines, ""] if lines else []


def _how_to_run(repo_id: str, index: dict) -> list[str]:
    # the examples use the smallest variant: the one a laptop user tries first
    example = min(
        index["variants"], key=lambda n: sum(index["files"][f]["size"] for f in index["variants"][n]["files"])
    )
    lines = [
        "## How to run",
        "",
        "With uner-toolkit (any variant; downloads only that variant, checks its sha256, then works offline):",
        "",
        "```bash",
    ]
    lines += [
        f"uner pull {repo_id} --variant {example}",
        f'uner extract --model {repo_id}:{example} --labels person,location --text "{_EXAMPLE_TEXT}"',
        "```",
        "",
        "```python",
        "from uner import load",
        "",
        f'ner = load("{repo_id}:{example}")',
        f'ner.extract("{_EXAMPLE_TEXT}", ["person", "location"])',
        "```",
        "",
    ]
    ggufs = [e for e in index["variants"].values() if e["format"] == "gguf"]
    if ggufs:
        path = ggufs[-1]["path"]
        lines += [
            "GGUF files run in any llama.cpp build (greedy, the prompt below with one entity type):",
            "",
            "```bash",
            f"llama-cli -m {path.rsplit('/', 1)[-1]} --temp 0 -n {DEFAULT_MAX_NEW_TOKENS} -no-cnv \\",
            f'  -p "{_prompt(index).format(text=_EXAMPLE_TEXT, label="person")}"',
            "```",
            "",
        ]
    onnx = [n for n, e in index["variants"].items() if e["format"] == "onnx"]
    if onnx:
        lines += [
            f"ONNX folders ({', '.join(f'`{n}`' for n in onnx)}) hold a KV-cache decoder built by onnxruntime-genai's "
            "model builder, its `genai_config.json` and tokenizer: they run in uner-toolkit's ONNX Runtime backend "
            "(CPU, CUDA, TensorRT) or in onnxruntime-genai.",
            "",
        ]
    return lines


def render_card(index: dict, repo_id: str) -> str:
    """README.md for ``repo_id`` holding the variants of ``index``."""
    formats = {entry["format"] for entry in index["variants"].values()}
    model = index["model"]
    eos = index.get("eos_token") or "</s>"
    revision = f" at commit `{index['source_commit']}`" if index.get("source_commit") else ""
    lines = [
        f"# {model}: {' and '.join(sorted(f.upper() for f in formats))} variants",
        "",
        index.get("description") or "",
        "",
        f"Converted from [{index['base_model']}](https://huggingface.co/{index['base_model']}) (source "
        f"`{index['source']}`{revision}) "
        f"with uner-toolkit {index['tool_version']}. Open named-entity recognition: ask for any entity type, get a "
        "JSON list "
        "of its mentions.",
        "",
        "## Variants",
        "",
        *_variant_rows(index),
        "",
        _bench_line(index),
        "",
        *_imatrix_lines(index),
        *_gptq_lines(index),
        "## Prompt",
        "",
        "One query per entity type; greedy decoding, at most "
        f"{DEFAULT_MAX_NEW_TOKENS} new tokens, stop at the end-of-sequence token (`{eos}` below is that special "
        'token, not text). The answer is a JSON list of mentions, e.g. `["Barack Obama", "Angela Merkel"]`.',
        "",
        "```text",
        _prompt(index),
        "```",
        "",
        *_how_to_run(repo_id, index),
        "## Licence",
        "",
        f"`{index['license']}`, as the weights these variants were converted from. Check the base model's card for "
        "the terms of use.",
        "",
    ]
    return _front_matter(index, formats) + "\n" + "\n".join(lines)
