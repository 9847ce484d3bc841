"""Export recipes: one declarative TOML file per released model (``export_recipes/*.toml``).

A recipe names the source checkpoint (Hub repo id, local folder or reference name) and its
revision and licence, the GGUF types and ONNX precisions to build, the bench data the variants
are checked on, and the largest F1 drop each variant may show against the torch reference
before it is refused for publishing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from uner.onnx_layout import EXPORT_TARGETS
from uner.toolkit.constants import QUANT_TYPES, OutType, check_projections, gguf_file_name
from uner.toolkit.errors import RecipeError
from uner.toolkit.imatrix import DEFAULT_TOKENS

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable

    import tomllib
else:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

    import tomli as tomllib

#: the shipped recipes: package data of ``uner.export_recipes`` (the ``export_recipes/`` folder),
#: so a wheel carries them
RECIPES_PACKAGE = "uner.export_recipes"
_TOP_KEYS = {
    "name",
    "source",
    "revision",
    "license",
    "base_model",
    "description",
    "allow_pickle",
    "gguf",
    "onnx",
    "bench",
    "gates",
}
#: the keys each table may hold ([gates] is keyed by variant names, checked against those)
_TABLE_KEYS = {
    "gguf": {"outtype", "types", "imatrix", "imatrix_tokens"},
    "onnx": {"precisions", "asymmetric", "head_bits", "int8_projections", "gptq", "gptq_tokens"},
    "bench": {"data", "limit", "max_limit", "max_new_tokens", "reference_device", "reference_dtype"},
}


@dataclass(frozen=True)
class VariantPlan:
    """One artifact a recipe builds: ``f16``/``q4_k_m``... (GGUF) or ``onnx-int4``... (ONNX)."""

    name: str
    format: str  # "gguf" or "onnx"
    kind: str  # GGUF type (f16, q4_k_m...) or ONNX precision
    max_f1_drop: float
    device: str | None = None  # ONNX target device

    def path(self, model: str) -> str:
        """Where the variant lives inside an output folder (and the Hub repo), POSIX-style."""
        if self.format == "gguf":
            return f"gguf/{gguf_file_name(model, self.kind)}"
        return f"onnx-{self.kind}"


@dataclass(frozen=True)
class BenchPlan:
    """The parity check: UniNER eval files (relative to the data folder), sampled to ``limit``
    queries each, against the source run on torch with these device and dtype. A variant the
    gate finds inconclusive is benched again on twice the queries, up to ``max_limit`` (None:
    every query of the files)."""

    data: tuple[str, ...]
    limit: int | None = None
    max_limit: int | None = None
    max_new_tokens: int = 256
    reference_device: str = "cpu"  # or "cuda", "auto"
    reference_dtype: str = "float32"  # or "float16", "bfloat16", "auto"


@dataclass(frozen=True)
class ImatrixPlan:
    """``[gguf] imatrix``: training files (relative to the data folder) whose UniNER
    conversations the importance matrix of the GGUF quantizations is measured on."""

    data: tuple[str, ...]
    tokens: int = DEFAULT_TOKENS
    output_head: bool = True  # part of the settings: a matrix measured without it is remeasured

    def as_dict(self) -> dict:
        return {"data": list(self.data), "tokens": self.tokens, "output_head": self.output_head}


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str
    revision: str | None
    license: str
    base_model: str
    description: str
    allow_pickle: bool
    gguf_outtype: str
    variants: tuple[VariantPlan, ...]
    bench: BenchPlan | None
    gguf_imatrix: ImatrixPlan | None = None
    #: ``export_onnx`` options of the int4/int8 precisions (``symmetric``, ``head_bits``)
    onnx_quantization: dict = field(default_factory=dict)
    file: Path | None = field(default=None, compare=False)

    def variant(self, name: str) -> VariantPlan:
        for plan in self.variants:
            if plan.name == name:
                return plan
        raise RecipeError(
            f"expected a variant of {self.name} ({', '.join(v.name for v in self.variants)}), got {name!r}"
        )

    def as_dict(self) -> dict:
        """What the variant index records of the recipe."""
        return {
            "name": self.name,
            "source": self.source,
            "revision": self.revision,
            "license": self.license,
            "base_model": self.base_model,
            "gguf_outtype": self.gguf_outtype,
            "gguf_imatrix": None if self.gguf_imatrix is None else self.gguf_imatrix.as_dict(),
            "onnx_quantization": dict(self.onnx_quantization),
            "variants": {
                v.name: {"format": v.format, "kind": v.kind, "device": v.device, "max_f1_drop": v.max_f1_drop}
                for v in self.variants
            },
            "bench": None
            if self.bench is None
            else {
                "data": list(self.bench.data),
                "limit": self.bench.limit,
                "max_new_tokens": self.bench.max_new_tokens,
                "reference_device": self.bench.reference_device,
                "reference_dtype": self.bench.reference_dtype,
            },
        }


def available_recipes() -> list[str]:
    """Names of the recipes shipped with the toolkit."""
    return sorted(entry.name[: -len(".toml")] for entry in _shipped().iterdir() if entry.name.endswith(".toml"))


def _shipped() -> Traversable:
    return resources.files(RECIPES_PACKAGE)


def find_recipe(name_or_path: str | Path) -> Path | Traversable:
    """A recipe file: a path to a ``.toml`` file, or the name of one in ``export_recipes/``."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise RecipeError(f"expected a recipe file, got {path}, which does not exist")
        return path
    candidate = _shipped() / f"{name_or_path}.toml"
    if not candidate.is_file():
        raise RecipeError(
            f"expected a recipe name among {', '.join(available_recipes())} or a .toml path, got {name_or_path!r}"
        )
    return candidate


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Read and check a recipe; every mistake is a one-line :class:`RecipeError`."""
    path = find_recipe(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"expected valid TOML in {path}, got: {exc}") from None
    try:
        return _parse(data, path)
    except RecipeError as exc:
        raise RecipeError(f"{path.name}: {exc}") from None


def _parse(data: dict, path: Path) -> Recipe:
    if unknown := set(data) - _TOP_KEYS:
        raise RecipeError(f"expected keys among {', '.join(sorted(_TOP_KEYS))}, got {', '.join(sorted(unknown))}")
    for table, allowed in _TABLE_KEYS.items():  # a typo (limt = 4) must not be ignored silently
        if isinstance(data.get(table), dict) and (unknown := set(data[table]) - allowed):
            raise RecipeError(
                f"expected [{table}] keys among {', '.join(sorted(allowed))}, got {', '.join(sorted(unknown))}"
            )
    name = _text(data, "name")
    gguf, onnx = _table(data, "gguf"), _table(data, "onnx")
    gates = _table(data, "gates")
    outtype = gguf.get("outtype", "f16")
    if outtype not in {t.value for t in OutType}:
        raise RecipeError(f"expected gguf.outtype among {', '.join(t.value for t in OutType)}, got {outtype!r}")
    plans = [_gguf_plan(kind, outtype, gates) for kind in _list(gguf, "types")]
    plans += [_onnx_plan(entry, gates) for entry in _list(onnx, "precisions")]
    if not plans:
        raise RecipeError("expected at least one variant in [gguf] types or [onnx] precisions")
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise RecipeError(f"expected distinct variants, got {', '.join(names)}")
    if unknown := set(gates) - set(names):
        raise RecipeError(
            f"expected [gates] only for built variants ({', '.join(names)}), got {', '.join(sorted(unknown))}"
        )
    return Recipe(
        name=name,
        source=_text(data, "source"),
        revision=data.get("revision"),
        license=_text(data, "license"),
        base_model=data.get("base_model", data["source"]),
        description=data.get("description", ""),
        allow_pickle=bool(data.get("allow_pickle", False)),
        gguf_outtype=outtype,
        variants=tuple(plans),
        bench=_bench(data.get("bench")),
        gguf_imatrix=_imatrix(gguf),
        onnx_quantization=_onnx_quantization(onnx),
        file=path,
    )


def _gguf_plan(kind: str, outtype: str, gates: dict) -> VariantPlan:
    if kind not in QUANT_TYPES and kind != outtype:
        raise RecipeError(
            f"expected gguf.types among {outtype} (the converted file) and {', '.join(QUANT_TYPES)}, got {kind!r}"
        )
    return VariantPlan(kind, "gguf", kind, _gate(gates, kind))


def _onnx_plan(entry: str, gates: dict) -> VariantPlan:
    precision, _, device = str(entry).partition(":")  # "fp16:cuda" picks a device
    if precision not in EXPORT_TARGETS:
        raise RecipeError(f"expected onnx.precisions among {', '.join(EXPORT_TARGETS)}, got {entry!r}")
    device = device or EXPORT_TARGETS[precision][0]
    if device not in EXPORT_TARGETS[precision]:
        raise RecipeError(
            f"expected a device among {', '.join(EXPORT_TARGETS[precision])} for {precision}, got {device!r}"
        )
    name = f"onnx-{precision}"
    return VariantPlan(name, "onnx", precision, _gate(gates, name), device)


def _onnx_quantization(onnx: dict) -> dict:
    """``[onnx] asymmetric``, ``head_bits``, ``int8_projections`` and ``gptq`` (+ ``gptq_tokens``)
    as ``export_onnx`` keyword arguments (``gptq_data`` still relative to the data folder)."""
    options = {}
    if "asymmetric" in onnx:
        if not isinstance(onnx["asymmetric"], bool):
            raise RecipeError(f"expected onnx.asymmetric to be true or false, got {onnx['asymmetric']!r}")
        options["symmetric"] = not onnx["asymmetric"]
    if "head_bits" in onnx:
        if onnx["head_bits"] not in (4, 8) or isinstance(onnx["head_bits"], bool):
            raise RecipeError(f"expected onnx.head_bits to be 4 or 8, got {onnx['head_bits']!r}")
        options["head_bits"] = onnx["head_bits"]
    if "int8_projections" in onnx:
        names = check_projections(_list(onnx, "int8_projections"), "onnx.int8_projections", RecipeError)
        options["int8_projections"] = list(names)
    if "gptq" in onnx:  # training files, relative to the data folder, as [gguf] imatrix
        options["gptq_data"] = [str(name) for name in _list(onnx, "gptq")]
    if "gptq_tokens" in onnx:
        if "gptq" not in onnx or not isinstance(onnx["gptq_tokens"], int) or onnx["gptq_tokens"] < 1:
            raise RecipeError(
                f"expected onnx.gptq_tokens, a positive count, with onnx.gptq, got {onnx['gptq_tokens']!r}"
            )
        options["gptq_tokens"] = onnx["gptq_tokens"]
    return options


def _gate(gates: dict, name: str) -> float:
    if name not in gates:
        raise RecipeError(f"expected a maximum F1 drop for {name} in [gates]")
    value = gates[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise RecipeError(f"expected a non-negative number of F1 points for gates.{name}, got {value!r}")
    return float(value)


def _imatrix(gguf: dict) -> ImatrixPlan | None:
    if "imatrix" not in gguf:
        if "imatrix_tokens" in gguf:
            raise RecipeError("expected gguf.imatrix (the calibration files) beside gguf.imatrix_tokens")
        return None
    data = tuple(_list(gguf, "imatrix"))
    if not data:
        raise RecipeError("expected gguf.imatrix to name at least one training file")
    tokens = gguf.get("imatrix_tokens", DEFAULT_TOKENS)
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        raise RecipeError(f"expected gguf.imatrix_tokens to be a positive integer, got {tokens!r}")
    return ImatrixPlan(data, tokens)


def _bench(table) -> BenchPlan | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise RecipeError("expected [bench] to be a table")
    data = tuple(_list(table, "data"))
    if not data:
        raise RecipeError("expected bench.data to name at least one eval file")
    limit = table.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise RecipeError(f"expected bench.limit to be a positive integer, got {limit!r}")
    max_limit = _max_limit(table, limit)
    max_new = table.get("max_new_tokens", 256)
    if not isinstance(max_new, int) or max_new < 1:
        raise RecipeError(f"expected bench.max_new_tokens to be a positive integer, got {max_new!r}")
    device = table.get("reference_device", "cpu")
    if device not in ("cpu", "cuda", "auto"):
        raise RecipeError(f"expected bench.reference_device among cpu, cuda, auto, got {device!r}")
    dtype = table.get("reference_dtype", "float32")
    if dtype not in ("float32", "float16", "bfloat16", "auto"):
        raise RecipeError(f"expected bench.reference_dtype among float32, float16, bfloat16, auto, got {dtype!r}")
    return BenchPlan(data, limit, max_limit, max_new, device, dtype)


def _max_limit(table: dict, limit: int | None) -> int | None:
    """bench.max_limit: an integer at least ``limit``, or "all"; by default 4 x ``limit``."""
    value = table.get("max_limit", "all" if limit is None else 4 * limit)
    if value == "all":
        return None
    if limit is None or not isinstance(value, int) or isinstance(value, bool) or value < limit:
        raise RecipeError(f"expected bench.max_limit to be 'all' or an integer of at least bench.limit, got {value!r}")
    return value


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RecipeError(f"expected a non-empty string for {key!r}")
    return value


def _table(data: dict, key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise RecipeError(f"expected [{key}] to be a table")
    return value


def _list(table: dict, key: str) -> list:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecipeError(f"expected {key} to be a list of strings")
    return value
