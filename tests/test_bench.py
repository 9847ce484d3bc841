"""``uner bench`` end to end on the tiny model, and its report's arithmetic."""

import json

import pytest

from tests.conftest import CROSSNER_EVAL
from tests.test_cli import assert_one_line_error, run
from uner.bench.report import summarize
from uner.bench.runner import Prediction, sample_queries
from uner.bench.suite import VariantRun, VariantSpec
from uner.cli import main as uner
from uner.eval_data import read_queries


@pytest.fixture(scope="module")
def small_eval_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    records = json.loads(CROSSNER_EVAL["music"].read_text())[:3]
    (folder / "music.json").write_text(json.dumps(records))
    (folder / "tiny.bio").write_text("O\tshow\nO\tme\nB-ACTOR\tbruce\nI-ACTOR\twillis\nO\tmovies\n")
    return [folder / "music.json", folder / "tiny.bio"]


def test_bench_writes_results_predictions_report_and_plots(
    tiny_spm_hf, tiny_spm_ggufs, tiny_spm_onnx_fp32, small_eval_files, tmp_path, capsys
):
    out = tmp_path / "bench"
    argv = [
        "bench",
        "-r",
        tiny_spm_hf,
        "-c",
        tiny_spm_ggufs["f32"],
        "-c",
        tiny_spm_onnx_fp32,
        "--per-query",
        "--constrain",
        "json",
        "-d",
        small_eval_files[0],
        "-d",
        small_eval_files[1],
        "--max-new-tokens",
        "8",
        "--threads",
        "2",
        "-o",
        out,
        "-q",
    ]
    code, stdout, err = run(uner, argv, capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    names = [v["name"] for v in results["variants"]]
    assert names == [
        "reference:tiny-spm-llama",
        "tiny-spm-llama.F32.gguf",
        "tiny-spm-llama.F32.gguf per-query",
        "tiny-spm-llama.F32.gguf json",
        "fp32",
        "fp32 per-query",
        "fp32 json",
        "hf-naive",
        "llamacpp-naive",
    ]
    by_name = {v["name"]: v for v in results["variants"]}
    assert by_name["fp32"]["x_own_per_query"] > 0 and by_name["fp32 per-query"]["x_own_per_query"] is None
    assert by_name["fp32"]["agreement"] == 100.0  # fp32 ONNX, batched, answers as the torch reference
    assert results["data"] == {"music": 3, "tiny": 1} and results["versions"]["python"]
    for variant in results["variants"]:
        assert {"name", "path", "backend", "f1", "delta_f1", "agreement", "queries_per_s", "size_bytes"} <= set(variant)
        low, high = variant["f1_ci95"]
        assert low <= variant["f1"] <= high and len(variant["delta_f1_ci95"]) == 2
        assert set(variant["changed_answers"]) == {"queries", "entities_gained", "entities_lost"}
        assert 0 <= variant["agreement"] <= 100 and variant["queries_per_s"] > 0
        lines = (
            (out / f"predictions-{variant['name'].replace(':', '_').replace(' ', '_')}.jsonl").read_text().splitlines()
        )
        assert len(lines) == 4 and {"id", "text", "label", "raw", "answers"} <= set(json.loads(lines[0]))
    assert results["variants"][0]["agreement"] == 100.0 and results["variants"][0]["delta_f1"] == 0.0
    assert by_name["hf-naive"]["x_hf_naive"] == pytest.approx(1.0)
    # stored bits per parameter of the reference: F32 files hold 32, whatever their vocabulary takes
    assert results["variants"][0]["bits_per_weight"] == 32.0
    assert by_name["tiny-spm-llama.F32.gguf"]["bits_per_weight"] == pytest.approx(32.0, rel=1e-3)
    report = (out / "report.md").read_text()
    assert "## music" in report and "## tiny" in report and "## speed" in report
    assert (out / "f1_vs_size.png").stat().st_size > 0 and (out / "queries_per_s.png").stat().st_size > 0


def test_bench_compares_each_variant_with_its_unguarded_and_closed_twins(
    tiny_spm_hf, tiny_spm_ggufs, small_eval_files, tmp_path, capsys
):
    out = tmp_path / "bench"
    argv = ["bench", "-r", tiny_spm_hf, "-c", tiny_spm_ggufs["f32"], "--unguarded", "--close-loops", "--no-baselines"]
    argv += ["-d", small_eval_files[0], "--max-new-tokens", "12", "--threads", "2", "-o", out, "-q"]
    code, _, err = run(uner, argv, capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    gguf = "tiny-spm-llama.F32.gguf"
    assert [v["name"] for v in results["variants"]] == [
        "reference:tiny-spm-llama",
        "reference:tiny-spm-llama no-loop-guard",
        gguf,
        f"{gguf} no-loop-guard",
        f"{gguf} close-loops",
    ]
    entries = {e["name"]: e for e in results["loop_guard"]}
    assert set(entries) == {"reference:tiny-spm-llama", gguf}
    for entry in entries.values():
        assert entry["parsed_identical"] == entry["queries"] == 3  # the guard's contract
        assert entry["guarded"]["generated_tokens"] <= entry["unguarded"]["generated_tokens"]
    assert "close_loops" in entries[gguf] and "close_loops" not in entries["reference:tiny-spm-llama"]
    for variant in results["variants"]:
        profile = variant["profile"]
        assert profile["prefill_seconds"] > 0 and profile["wall_seconds"] >= profile["prefill_seconds"]
        assert sum(profile["stops"].values()) == 3 and profile["decode_steps"] >= 0
    unguarded = {v["name"]: v for v in results["variants"]}[f"{gguf} no-loop-guard"]["profile"]["stops"]
    assert set(unguarded) <= {"eos", "limit"}  # no guard, no guard's cuts
    report = (out / "report.md").read_text()
    assert "## loop guard" in report and "## where the time went" in report and "close-loops" in report


def test_bench_compares_each_variant_with_its_fresh_stem_twin(
    tiny_spm_hf, tiny_spm_ggufs, small_eval_files, tmp_path, capsys
):
    out = tmp_path / "bench"
    argv = ["bench", "-r", tiny_spm_hf, "-c", tiny_spm_ggufs["f32"], "--fresh-stem", "--no-baselines", "-q"]
    argv += ["-d", small_eval_files[0], "--max-new-tokens", "12", "--threads", "2", "-o", out]
    code, _, err = run(uner, argv, capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    gguf = "tiny-spm-llama.F32.gguf"
    names = [v["name"] for v in results["variants"]]
    assert names == ["reference:tiny-spm-llama", "reference:tiny-spm-llama fresh-stem", gguf, f"{gguf} fresh-stem"]
    entries = {e["name"]: e for e in results["prompt_stem"]}
    assert set(entries) == {"reference:tiny-spm-llama", gguf}
    assert all(e["raw_identical"] == e["queries"] == 3 for e in entries.values())
    assert results["loop_guard"] == []
    assert "## prompt stem" in (out / "report.md").read_text()


def test_a_reference_that_is_not_a_hf_folder_is_refused(tiny_spm_ggufs, small_eval_files, tmp_path, capsys):
    argv = ["bench", "-r", tiny_spm_ggufs["f32"], "-d", small_eval_files[0], "-o", tmp_path / "b"]
    code, _, err = run(uner, argv, capsys)
    assert_one_line_error(code, err, "expected --reference to be a Hugging Face folder")


def test_the_sample_is_whole_texts_deterministic_and_in_file_order():
    queries = read_queries(CROSSNER_EVAL["ai"])
    first, second = sample_queries(queries, 50), sample_queries(queries, 50)
    assert first == second and 30 <= len(first) <= 50
    assert [queries.index(q) for q in first] == sorted(queries.index(q) for q in first)
    chosen_texts = {q.text for q in first}
    assert len(chosen_texts) >= 3
    assert first == [q for q in queries if q.text in chosen_texts]  # every type of a chosen text


def _run(name, raws, seconds):
    predictions = [
        Prediction(str(i), "d", "t", "person", '["Ann"]', raw, [], 10, 4, seconds, 0.0) for i, raw in enumerate(raws)
    ]
    return VariantRun(VariantSpec(name, "p"), "x", predictions, 1.0, 1, 100, 100)


def test_scores_agreement_and_ratios_are_measured_against_the_same_run():
    reference = _run("ref", ['["Ann"]', "[]"], 1.0)
    candidate = _run("cand", ['["Ann"]', '["Bob"]'], 0.5)
    naive = _run("hf-naive", ['["Ann"]', "[]"], 2.0)
    ref, cand, _ = summarize([reference, candidate, naive], bandwidth=1000.0)
    # gold is ["Ann"] twice: the reference finds 1 of 2 (P 1, R 1/2), the candidate 1 of 2 with a miss (P 1/2, R 1/2)
    assert ref["f1"] == pytest.approx(200 / 3) and cand["f1"] == pytest.approx(50.0)
    assert cand["agreement"] == 50.0 and cand["delta_f1"] == pytest.approx(50.0 - 200 / 3)
    assert cand["x_hf_naive"] == pytest.approx(4.0) and ref["x_hf_naive"] == pytest.approx(2.0)
    assert cand["decode_bound_tokens_per_s"] == pytest.approx(10.0)
    assert cand["changed_answers"] == {"queries": 1, "entities_gained": 1, "entities_lost": 0}
    assert ref["delta_f1_ci95"] == [0.0, 0.0] and cand["delta_f1_ci95"][0] <= cand["delta_f1"] <= 0.0


def test_bits_per_weight_of_a_torch_run_are_those_it_computes_with_not_those_stored():
    from uner.bench.report import _bits_per_weight
    from uner.bench.suite import VariantRun, VariantSpec

    def run(backend):  # 100 parameters computed in fp32 (400 bytes), stored as bf16 (200 bytes)
        return VariantRun(VariantSpec("x", "x"), backend, [], 0.0, 0, 0, 400, stored_weight_bytes=200)

    assert _bits_per_weight(run("torch"), 100, is_reference=False) == 32.0  # a reference twin, a torch candidate
    assert _bits_per_weight(run("llamacpp"), 100, is_reference=False) == 16.0  # a file: what it stores


def test_the_ray_bench_rates_modes_by_their_steady_rate_and_counts_identical_documents():
    from uner.bench.ray_throughput import CPU_GROUPS, report, summarize

    def run(wall: float, fixed: float, answers: dict) -> dict:
        cpu = {group: 1.0 for group in CPU_GROUPS}
        return {"wall_s": wall, "peak_pss_mb": 100.0, "cpu_s": cpu, "answers": answers, "group_pss_mb": cpu,
                "fixed": {"wall_s": fixed, "peak_pss_mb": 50.0, "cpu_s": cpu}}  # fmt: skip

    entity = {"label": "person", "text": "Ada", "start": 0, "end": 3}
    results = {"single": run(12.0, 2.0, {"a": [], "b": [entity]}), "ray": run(7.0, 2.0, {"a": [], "b": []})}
    single, ray_row = summarize(results, documents=12)
    assert single["steady_documents_per_s"] == 1.0 and ray_row["steady_documents_per_s"] == 2.0
    assert ray_row["steady_x_baseline"] == 2.0 and ray_row["identical_documents"] == 1
    text = report([single, ray_row], {"model": "m", "documents": 12, "labels": ["person"], "data": ["d.json"],
                                      "repeats": 1, "cpus": 2})  # fmt: skip
    assert "| ray | 7.0 | 1.71 | 1.71 | 2.0 | 2.00 | 2.00 | 100 | 1/12 |" in text
    assert "| ray | 1.0 | 1.0 | 1.0 | 1.0 | 29% | 1 | 1 | 1 | 1 |" in text  # 4 CPU s over 7 s x 2 cores
