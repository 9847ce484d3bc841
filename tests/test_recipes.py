"""Export recipes, ``uner-export recipe`` (resumable, parity gate) and ``uner-export verify``."""

import json

import onnx
import pytest

from tests.conftest import DATA, TINY_RECIPE, write_recipe
from tests.test_cli import assert_one_line_error, run
from uner.bench.recipe_run import run_recipe
from uner.manifest import sha256_file
from uner.toolkit.cli import main as uner_export
from uner.toolkit.errors import RecipeError
from uner.toolkit.gates import verdict
from uner.toolkit.publish import plan_push
from uner.toolkit.recipes import available_recipes, load_recipe

pytestmark = pytest.mark.usefixtures("own_uner_cache")

UNINER_7B = ["UniNER-7B-all", "UniNER-7B-definition", "UniNER-7B-type", "UniNER-7B-type-sup"]


# -- recipes ----------------------------------------------------------------------------------


def test_every_shipped_recipe_is_valid_and_gates_every_variant():
    assert set(UNINER_7B + ["uniner-smol-135m"]) <= set(available_recipes())
    for name in available_recipes():
        recipe = load_recipe(name)
        assert recipe.name == name and recipe.variants and recipe.bench is not None
        assert all(v.max_f1_drop >= 0 for v in recipe.variants)
        assert {"gguf", "onnx"} == {v.format for v in recipe.variants}
    for name in UNINER_7B:
        recipe = load_recipe(name)
        assert recipe.source == f"Universal-NER/{name}" and recipe.license == "cc-by-nc-4.0"
        assert recipe.allow_pickle  # the releases ship pytorch_model*.bin


@pytest.mark.parametrize(
    "change, fragment",
    [
        (("q8_0 = 0.5\n", ""), "expected a maximum F1 drop for q8_0"),
        (('types = ["f16", "q8_0"]', 'types = ["f16", "q9_9"]'), "got 'q9_9'"),
        (('precisions = ["fp32"]', 'precisions = ["fp16:cpu"]'), "expected a device among cuda, tensorrt for fp16"),
        (("q8_0 = 0.5", "q8_0 = -1"), "non-negative number"),
        (("limit = 4", "limit = 0"), "bench.limit"),
        (("limit = 4", "limit = 4\nmax_limit = 3"), "bench.max_limit to be 'all' or an integer of at least"),
        (('license = "cc-by-nc-4.0"', 'licence = "cc-by-nc-4.0"'), "got licence"),
        (("max_new_tokens = 6", 'max_new_tokens = 6\nreference_device = "tpu"'), "bench.reference_device"),
        (('precisions = ["fp32"]', 'precisions = ["fp32"]\nhead_bits = 6'), "onnx.head_bits to be 4 or 8, got 6"),
        (('precisions = ["fp32"]', 'precisions = ["fp32"]\nasymmetric = "yes"'), "onnx.asymmetric to be true or"),
        (
            ('precisions = ["fp32"]', 'precisions = ["fp32"]\nint8_projections = ["mlp"]'),
            "onnx.int8_projections among qkv_proj, q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, got",
        ),
        (
            ('precisions = ["fp32"]', 'precisions = ["fp32"]\ngptq_tokens = 300'),
            "onnx.gptq_tokens, a positive count, with",
        ),
    ],
)
def test_a_recipe_mistake_is_a_one_line_error_before_any_work(tiny_spm_hf, tmp_path, capsys, change, fragment):
    recipe = write_recipe(tmp_path, tiny_spm_hf, TINY_RECIPE.replace(*change))
    code, _, err = run(uner_export, ["recipe", recipe, "--out", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "out").exists()


def test_onnx_quantization_options_reach_the_quantized_variants_only(tiny_spm_hf, tmp_path):
    # int4 defaults to asymmetric, so symmetric here shows the option arriving
    options = 'precisions = ["fp32", "int4"]\nasymmetric = false\nhead_bits = 8\nint8_projections = ["up_proj"]'
    text = TINY_RECIPE.replace('precisions = ["fp32"]', options)
    recipe = load_recipe(write_recipe(tmp_path, tiny_spm_hf, text + "onnx-int4 = 50.0\n"))
    expected = {"symmetric": True, "head_bits": 8, "int8_projections": ["up_proj"]}
    assert recipe.onnx_quantization == expected
    run = run_recipe(recipe, tmp_path / "out", bench=False, progress=False)
    variants = run.index["variants"]
    assert variants["onnx-int4"]["build"]["quantization"] == expected
    assert "quantization" not in variants["onnx-fp32"]["build"]
    manifest = json.loads((tmp_path / "out" / "onnx-int4" / "manifest.json").read_text())
    assert {key: manifest["quantization"][key] for key in expected} == expected
    graph = onnx.load(str(tmp_path / "out" / "onnx-int4" / "model.onnx"), load_external_data=False).graph
    matmuls = [n for n in graph.node if n.op_type == "MatMulNBits"]
    widths = {
        n.input[1].split(".MatMul")[0].split(".")[-1]: a.i for n in matmuls for a in n.attribute if a.name == "bits"
    }
    assert widths == {"qkv_proj": 4, "o_proj": 4, "gate_proj": 4, "up_proj": 8, "down_proj": 4, "lm_head": 8}


def test_recipe_gptq_and_int8_projections_reach_the_int4_variant_only_and_gptq_data_is_checked_first(
    tiny_spm_hf, tmp_path
):
    options = (
        'precisions = ["fp32", "int8", "int4"]\ngptq = ["crossner_ai/train.txt"]\ngptq_tokens = 300\n'
        'int8_projections = ["qkv_proj"]'
    )
    text = TINY_RECIPE.replace('precisions = ["fp32"]', options)
    recipe = load_recipe(write_recipe(tmp_path, tiny_spm_hf, text + "onnx-int4 = 50.0\nonnx-int8 = 50.0\n"))
    with pytest.raises(RecipeError, match="GPTQ calibration data in .*, missing crossner_ai/train.txt"):
        run_recipe(recipe, tmp_path / "nothing", data_dir=tmp_path, bench=False, progress=False)
    assert not (tmp_path / "nothing").exists()
    run = run_recipe(recipe, tmp_path / "out", data_dir=DATA, bench=False, progress=False)
    variants = run.index["variants"]
    assert variants["onnx-int4"]["build"]["quantization"]["gptq_data"] == ["crossner_ai/train.txt"]
    int8_options = variants["onnx-int8"]["build"].get("quantization", {})
    assert "gptq_data" not in int8_options and "int8_projections" not in int8_options  # int4-only options
    manifest = json.loads((tmp_path / "out" / "onnx-int4" / "manifest.json").read_text())
    assert manifest["quantization"]["gptq"] == {"data": ["crossner_ai/train.txt"], "tokens": 300}
    card = plan_push(tmp_path / "out", "me/tiny-uner", include_failed=True).card
    assert "`onnx-int4` rounds its 4-bit weights by GPTQ" in card and "300 tokens" in card
    assert "crossner_ai/train.txt" in card


def test_a_recipe_whose_source_is_a_reference_name_builds_from_that_reference(monkeypatch, tmp_path):
    from uner.bench import reference_models
    from uner.bench.recipe_run import resolve_source

    built = tmp_path / "built-reference"
    monkeypatch.setattr(reference_models, "resolve_reference", lambda name: str(built / name))
    recipe = load_recipe("uniner-smol-135m")  # the shipped recipe: source = "uniner-smol-135m"
    assert resolve_source(recipe) == (built / "uniner-smol-135m", None)


def test_an_unknown_recipe_name_lists_the_shipped_ones(tmp_path, capsys):
    code, _, err = run(uner_export, ["recipe", "UniNER-13B", "--out", tmp_path], capsys)
    assert_one_line_error(code, err, "UniNER-7B-type")


def test_a_recipe_without_its_bench_data_refuses_to_start(tiny_spm_hf, tmp_path):
    with pytest.raises(RecipeError, match="missing crossner_ai/CrossNER_AI.json"):
        run_recipe(load_recipe(write_recipe(tmp_path, tiny_spm_hf)), tmp_path / "out", data_dir=tmp_path)
    assert not (tmp_path / "out").exists()


# -- running a recipe --------------------------------------------------------------------------


def test_a_recipe_builds_checks_and_indexes_every_variant(tiny_export, capsys):
    index = json.loads((tiny_export / "manifest.json").read_text())
    assert list(index["variants"]) == ["f16", "q8_0", "onnx-fp32"]
    for entry in index["variants"].values():
        assert entry["status"] == "passed" and entry["bench"]["queries"] > 0
        for name in entry["files"]:
            assert index["files"][name] == {
                "size": (tiny_export / name).stat().st_size,
                "sha256": sha256_file(tiny_export / name),
            }
    assert index["variants"]["q8_0"]["files"] == ["gguf/tiny.Q8_0.gguf"]
    assert "onnx-fp32/model.onnx" in index["variants"]["onnx-fp32"]["files"]
    code, out, _ = run(uner_export, ["verify", tiny_export, "-q"], capsys)
    assert code == 0 and out.startswith(f"OK {len(index['files'])} files")


def test_a_second_run_keeps_finished_variants_and_their_bench(tiny_spm_hf, export_copy, monkeypatch):
    import uner.bench.recipe_run as recipe_run

    before = {p: p.stat().st_mtime_ns for p in export_copy.rglob("*") if p.is_file() and p.name != "manifest.json"}
    monkeypatch.setattr(recipe_run, "_run_bench", lambda *a, **k: pytest.fail("benched again"))
    monkeypatch.setattr(recipe_run, "resolve_source", lambda *a, **k: pytest.fail("rebuilt"))
    run = run_recipe(
        load_recipe(write_recipe(export_copy.parent, tiny_spm_hf)), export_copy, data_dir=DATA, progress=False
    )
    assert all(run.status(name) == "passed" for name in ("f16", "q8_0", "onnx-fp32"))
    assert before == {p: p.stat().st_mtime_ns for p in before}


def test_a_variant_whose_file_changed_is_rebuilt_and_benched_again(tiny_spm_hf, export_copy, monkeypatch):
    import uner.bench.recipe_run as recipe_run

    target = export_copy / "gguf" / "tiny.Q8_0.gguf"
    good = sha256_file(target)
    with target.open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\0\1\2\3")
    benched = []
    monkeypatch.setattr(
        recipe_run,
        "_run_bench",
        lambda recipe, out, plans, *a: (
            benched.extend(p.name for p in plans)
            or [
                {
                    "f1": 0.0,
                    "delta_f1": 0.0,
                    "agreement": 100.0,
                    "reference_f1": 0.0,
                    "queries": 13,
                    "queries_per_s": 1.0,
                }
                for _ in plans
            ]
        ),
    )
    run_recipe(load_recipe(write_recipe(export_copy.parent, tiny_spm_hf)), export_copy, data_dir=DATA, progress=False)
    assert sha256_file(target) == good and benched == ["q8_0"]


def test_a_variant_over_its_gate_is_kept_but_not_published(tiny_spm_hf, export_copy, monkeypatch, capsys):
    import uner.bench.recipe_run as recipe_run

    recipe = write_recipe(
        export_copy.parent, tiny_spm_hf, TINY_RECIPE.replace("limit = 4", "limit = 3")
    )  # new bench settings
    monkeypatch.setattr(
        recipe_run,
        "_run_bench",
        lambda recipe, out, plans, *a: [
            {
                "f1": 30.0 - (1.2 if p.name == "q8_0" else 0.0),
                "delta_f1": -1.2 if p.name == "q8_0" else 0.0,
                "agreement": 90.0,
                "reference_f1": 30.0,
                "queries": 10,
                "queries_per_s": 1.0,
            }
            for p in plans
        ],
    )
    code, out, _ = run(uner_export, ["recipe", recipe, "--out", export_copy, "--data-dir", DATA, "-q"], capsys)
    assert code == 0
    assert "q8_0\tfailed\tgguf/tiny.Q8_0.gguf\tF1 28.80 (ΔF1 -1.20 [-1.20, -1.20], max drop 0.5, 10 queries)" in out
    assert (export_copy / "gguf" / "tiny.Q8_0.gguf").is_file()
    plan = plan_push(export_copy, "me/tiny-uner")
    assert plan.variants == ["f16", "onnx-fp32"]
    assert plan.left_out == {"q8_0": "ΔF1 [-1.20, -1.20] lies below −0.5 (failed on 10 queries)"}
    assert "gguf/tiny.Q8_0.gguf" not in {f.path_in_repo for f in plan.files}
    assert plan_push(export_copy, "me/tiny-uner", include_failed=True).variants == ["f16", "q8_0", "onnx-fp32"]


@pytest.mark.parametrize(
    ("interval", "status"),
    [((-0.5, 0.3), "passed"), ((-0.6, 0.3), "inconclusive"), ((-3.0, -0.6), "failed"), ((-0.5, -0.5), "passed")],
)
def test_the_gate_decides_on_the_whole_interval_not_the_point(interval, status):
    assert verdict({"delta_f1": -0.4, "delta_f1_ci95": list(interval)}, max_drop=0.5) == status


def _interval_bench(intervals, asked):
    """A stand-in for the bench: ``intervals(name, limit)`` gives each variant's ΔF1 interval."""

    def fake(recipe, out, plans, data, threads, reference, limit):
        asked.append((limit, [p.name for p in plans]))
        return [
            {
                "f1": 30.0,
                "f1_ci95": [25.0, 35.0],
                "delta_f1": sum(intervals(p.name, limit)) / 2,
                "delta_f1_ci95": list(intervals(p.name, limit)),
                "agreement": 95.0,
                "reference_f1": 30.0,
                "queries": 3 * limit,
                "queries_per_s": 1.0,
            }
            for p in plans
        ]

    return fake


def test_an_inconclusive_variant_is_benched_again_on_twice_the_queries(tiny_spm_hf, export_copy, monkeypatch, capsys):
    import uner.bench.recipe_run as recipe_run

    asked = []
    # q8_0's interval straddles its gate (-0.5) on 2 queries per file, lies within it on 4
    narrowing = lambda name, limit: (-1.0, 0.2) if name == "q8_0" and limit < 4 else (-0.05, 0.1)  # noqa: E731
    monkeypatch.setattr(recipe_run, "_run_bench", _interval_bench(narrowing, asked))
    recipe = write_recipe(export_copy.parent, tiny_spm_hf, TINY_RECIPE.replace("limit = 4", "limit = 2"))
    run = run_recipe(load_recipe(recipe), export_copy, data_dir=DATA, progress=False)
    assert asked == [(2, ["f16", "q8_0", "onnx-fp32"]), (4, ["q8_0"])]
    assert all(run.status(name) == "passed" for name in ("f16", "q8_0", "onnx-fp32"))
    assert run.index["variants"]["q8_0"]["bench"]["limit"] == 4


def test_a_variant_still_inconclusive_at_the_cap_is_not_published(tiny_spm_hf, export_copy, monkeypatch):
    import uner.bench.recipe_run as recipe_run

    asked = []
    straddling = lambda name, limit: (-1.0, 0.2) if name == "q8_0" else (0.0, 0.0)  # noqa: E731
    monkeypatch.setattr(recipe_run, "_run_bench", _interval_bench(straddling, asked))
    text = TINY_RECIPE.replace("limit = 4", "limit = 2\nmax_limit = 5")
    run = run_recipe(load_recipe(write_recipe(export_copy.parent, tiny_spm_hf, text)), export_copy, data_dir=DATA)
    assert [limit for limit, _ in asked] == [2, 4, 5] and run.status("q8_0") == "inconclusive"
    plan = plan_push(export_copy, "me/tiny-uner")
    assert plan.variants == ["f16", "onnx-fp32"]
    assert plan.left_out == {"q8_0": "ΔF1 [-1.00, +0.20] straddles −0.5 after 15 queries (inconclusive at the cap)"}
    monkeypatch.setattr(recipe_run, "_run_bench", lambda *a, **k: pytest.fail("benched again"))
    again = run_recipe(load_recipe(write_recipe(export_copy.parent, tiny_spm_hf, text)), export_copy, data_dir=DATA)
    assert again.status("q8_0") == "inconclusive"  # settled at the cap: a rerun does not bench it again


def test_escalation_stops_when_a_bigger_limit_takes_no_more_queries(tiny_spm_hf, export_copy, monkeypatch):
    import uner.bench.recipe_run as recipe_run

    asked = []
    straddling = lambda name, limit: (-1.0, 0.2) if name == "q8_0" else (0.0, 0.0)  # noqa: E731
    fake = _interval_bench(straddling, asked)
    small_files = lambda *a: [{**r, "queries": 12} for r in fake(*a)]  # noqa: E731  (the files hold 12 queries)
    monkeypatch.setattr(recipe_run, "_run_bench", small_files)
    text = TINY_RECIPE.replace("limit = 4", 'limit = 2\nmax_limit = "all"')
    run = run_recipe(load_recipe(write_recipe(export_copy.parent, tiny_spm_hf, text)), export_copy, data_dir=DATA)
    assert [limit for limit, _ in asked] == [2, 4] and run.status("q8_0") == "inconclusive"


def test_a_recipe_imatrix_weighs_its_quantizations_once_and_is_kept_while_its_settings_are(
    tiny_spm_hf, tmp_path, monkeypatch
):
    import uner.toolkit.imatrix as imatrix_module

    calibrated = 'types = ["f16", "q4_k_m"]\nimatrix = ["crossner_ai/train.txt"]\nimatrix_tokens = 400'
    text = TINY_RECIPE.replace('types = ["f16", "q8_0"]', calibrated).replace("q8_0 = 0.5", "q4_k_m = 0.5")
    recipe = load_recipe(write_recipe(tmp_path, tiny_spm_hf, text))
    run = run_recipe(recipe, tmp_path / "out", data_dir=DATA, bench=False, progress=False)
    record = run.index["imatrix"]
    assert record["datasets"] == ["crossner_ai/train.txt"] and record["tokens"] >= 400
    assert record["sha256"] == sha256_file(tmp_path / "out" / "imatrix.gguf")
    assert run.index["variants"]["q4_k_m"]["build"]["imatrix"] == {
        "data": ["crossner_ai/train.txt"],
        "tokens": 400,
        "output_head": True,
    }
    assert "imatrix" not in run.index["variants"]["f16"]["build"]  # the converted file is not quantized
    card = plan_push(tmp_path / "out", "me/tiny-uner", include_failed=True).card
    assert "`q4_k_m` weigh their rounding by an importance matrix measured on" in card
    monkeypatch.setattr(imatrix_module, "collect", lambda *a, **k: pytest.fail("measured again"))
    again = run_recipe(recipe, tmp_path / "out", data_dir=DATA, bench=False, progress=False)
    assert again.index["imatrix"] == record


def test_a_recipe_whose_imatrix_data_is_missing_refuses_to_start(tiny_spm_hf, tmp_path):
    text = TINY_RECIPE.replace('types = ["f16", "q8_0"]', 'types = ["f16", "q8_0"]\nimatrix = ["nope/train.txt"]')
    with pytest.raises(RecipeError, match="missing nope/train.txt"):
        run_recipe(load_recipe(write_recipe(tmp_path, tiny_spm_hf, text)), tmp_path / "out", data_dir=DATA, bench=False)
    assert not (tmp_path / "out").exists()


def test_verify_names_the_file_that_differs(export_copy, capsys):
    (export_copy / "onnx-fp32" / "genai_config.json").write_text("{}")
    (export_copy / "gguf" / "tiny.F16.gguf").unlink()
    code, out, err = run(uner_export, ["verify", export_copy, "-q"], capsys)
    assert_one_line_error(code, err, "2 of")
    assert "MISMATCH onnx-fp32/genai_config.json: size" in out and "MISMATCH gguf/tiny.F16.gguf: missing" in out


def test_the_reference_runs_where_the_recipe_says(tiny_spm_hf, export_copy, monkeypatch):
    import uner.bench.cli

    asked = {}

    def fake_bench(reference, candidates, data, out, **options):
        asked.update(options["reference_options"])
        entries = [{"path": reference, "f1": 10.0, "delta_f1": 0.0, "agreement": 100.0, "queries_per_s": 1.0}]
        entries += [
            {"path": c, "f1": 10.0, "delta_f1": 0.0, "agreement": 100.0, "queries_per_s": 1.0} for c in candidates
        ]
        return {"variants": entries, "queries": 13}

    monkeypatch.setattr(uner.bench.cli, "run_bench", fake_bench)
    text = TINY_RECIPE.replace(
        "max_new_tokens = 6", 'max_new_tokens = 6\nreference_device = "auto"\nreference_dtype = "bfloat16"'
    )
    run = run_recipe(
        load_recipe(write_recipe(export_copy.parent, tiny_spm_hf, text)), export_copy, data_dir=DATA, progress=False
    )
    assert asked == {"device": "auto", "dtype": "bfloat16"}  # new settings: every variant benched again
    assert run.index["variants"]["q8_0"]["bench"]["settings"]["dtype"] == "bfloat16"
