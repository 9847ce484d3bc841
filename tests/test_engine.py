"""The batched engine: one prefill per text, all types decoded together, same answers as the
per-query path of the same backend."""

import pytest

from tests.conftest import crossner_texts
from uner import load
from uner.engine import Job, shared_prefix

MAX_NEW = 40


def per_query_and_batched(extractor, texts):
    """Generated ids of every (text, label), per query and batched, from the same extractor."""
    plain, batched = [], []
    for text, labels in texts:
        prompts = [extractor.prompt_ids(text, label) for label in labels]
        extractor.batched = False
        plain.append(extractor.generate_together(prompts, text))
        extractor.batched = True
        batched.append(extractor.generate_together(prompts, text))
    return plain, batched


@pytest.fixture(params=["torch", "gguf-f32", "onnx-fp32"])
def artifact(request, uniner_smol_hf, uniner_smol_ggufs, uniner_smol_onnx):
    kind, _, variant = request.param.partition("-")
    return {"torch": uniner_smol_hf, "gguf": uniner_smol_ggufs.get(variant), "onnx": uniner_smol_onnx.get(variant)}[
        kind
    ]


def test_batched_answers_are_identical_to_per_query_answers(artifact):
    texts = [(text, labels[:6]) for text, labels in crossner_texts(per_domain=1)]  # 3 texts x 6 types
    with load(artifact, max_new_tokens=MAX_NEW) as ner:
        plain, batched = per_query_and_batched(ner, texts)
    assert batched == plain
    lengths = {len(ids) for per_text in plain for ids in per_text}
    assert len(lengths) > 2, "answers of different lengths: branches must finish at different steps"


def test_quantized_llamacpp_files_agree_on_almost_every_answer(uniner_smol_ggufs):
    # llama.cpp's quantized matmuls sum in an order that depends on how many rows a batch
    # has, so a near-tie can flip; F16/F32 files are identical (above). Measured: 102/108.
    texts = crossner_texts(per_domain=3)
    with load(uniner_smol_ggufs["q4_k_m"], max_new_tokens=MAX_NEW) as ner:
        plain, batched = per_query_and_batched(ner, texts)
    pairs = [(a, b) for p, q in zip(plain, batched) for a, b in zip(p, q)]
    assert sum(a == b for a, b in pairs) >= 0.9 * len(pairs)


def test_onnx_int4_agrees_with_its_per_query_path_on_almost_every_answer(uniner_smol_onnx):
    # MatMulNBits rounds by how many rows a call has, and the engine encodes a text's suffixes in
    # one call: near-ties can flip, as on Q4_K_M (measured: 114 of 117 CrossNER AI answers).
    texts = crossner_texts(per_domain=3)
    with load(uniner_smol_onnx["int4"], max_new_tokens=MAX_NEW) as ner:
        assert ner.io.suffix_batching
        plain, batched = per_query_and_batched(ner, texts)
    pairs = [(a, b) for p, q in zip(plain, batched) for a, b in zip(p, q)]
    assert sum(a == b for a, b in pairs) >= 0.9 * len(pairs)


def test_the_parity_check_catches_a_branch_that_loses_a_token(uniner_smol_ggufs, monkeypatch):
    from uner.llamacpp_branches import LlamaCppBranches

    add = LlamaCppBranches.add
    monkeypatch.setattr(
        LlamaCppBranches,
        "add",
        lambda self, prefix, suffixes, stem=0: add(self, prefix, [s[1:] for s in suffixes], stem),
    )
    with load(uniner_smol_ggufs["f32"], max_new_tokens=MAX_NEW) as ner:
        plain, batched = per_query_and_batched(ner, crossner_texts(per_domain=1)[:1])
    assert batched != plain


def test_finished_branches_drop_out_of_the_batch(uniner_smol_ggufs, monkeypatch):
    from uner.llamacpp_branches import LlamaCppBranches

    rows = []
    step = LlamaCppBranches.step
    monkeypatch.setattr(
        LlamaCppBranches,
        "step",
        lambda self, branches, tokens: rows.append(len(branches)) or step(self, branches, tokens),
    )
    text, labels = crossner_texts(per_domain=1)[2]  # answers of several lengths
    with load(uniner_smol_ggufs["q4_k_m"], max_new_tokens=MAX_NEW) as ner:
        outputs = ner.generate_together([ner.prompt_ids(text, label) for label in labels], text)
        # an answer ending on EOS takes a step for it; one cut at the limit or by the guard does not
        assert len(rows) == max(len(ids) - (ner.stop_reason(ids) != "eos") for ids in outputs)
    assert rows == sorted(rows, reverse=True) and rows[-1] >= 1
    assert len(set(rows)) > 1


def test_types_that_do_not_fit_the_kv_cache_run_in_several_batches(uniner_smol_ggufs, monkeypatch):
    from uner.llamacpp_branches import LlamaCppBranches

    starts = []
    add = LlamaCppBranches.add
    monkeypatch.setattr(
        LlamaCppBranches,
        "add",
        lambda self, prefix, suffixes, stem=0: starts.append(len(suffixes)) or add(self, prefix, suffixes, stem),
    )
    text, labels = crossner_texts(per_domain=1)[0]
    with load(uniner_smol_ggufs["f32"], max_new_tokens=MAX_NEW, n_ctx=384) as ner:
        plain, batched = per_query_and_batched(ner, [(text, labels)])
    assert len(starts) > 1 and sum(starts) == len(labels)
    assert batched == plain


@pytest.fixture(params=["gguf-f32", "torch", "onnx-fp32"])
def multi_text_artifact(request, uniner_smol_hf, uniner_smol_ggufs, uniner_smol_onnx):
    kind, _, variant = request.param.partition("-")
    if kind == "gguf":  # llama.cpp decodes one text at a time unless asked for more
        return uniner_smol_ggufs[variant], {"parallel_texts": 3}
    return {"torch": uniner_smol_hf, "onnx": uniner_smol_onnx.get(variant)}[kind], {}


def test_several_texts_decode_together_with_the_same_answers(multi_text_artifact):
    path, options = multi_text_artifact
    texts = crossner_texts(per_domain=1)
    with load(path, max_new_tokens=MAX_NEW, **options) as ner:
        jobs = [Job([ner.prompt_ids(text, label) for label in labels], text) for text, labels in texts]
        together = dict(ner.generate_jobs(jobs))
        ner.batched = False
        alone = dict(ner.generate_jobs(jobs))
        assert together == alone
        # unguarded, every "[]" answer takes a step for its EOS: enough rows to see texts share steps
        ner.batched, ner.loop_guard = True, False
        dict(ner.generate_jobs(jobs))
        assert max(ner.stats.tokens_per_step) > max(len(labels) for _, labels in texts)


@pytest.mark.parametrize("kind", ["torch", "onnx"])
def test_a_text_joins_the_running_batch_whole_once_finished_rows_have_left(
    kind, uniner_smol_hf, uniner_smol_onnx, monkeypatch
):
    from uner.onnx_branches import OnnxBranches
    from uner.torch_branches import TorchBranches

    pool_class = {"torch": TorchBranches, "onnx": OnnxBranches}[kind]
    added = []
    add = pool_class.add
    monkeypatch.setattr(
        pool_class,
        "add",
        lambda self, prefix, suffixes, stem=0: added.append(len(suffixes)) or add(self, prefix, suffixes, stem),
    )
    texts = crossner_texts(per_domain=2)  # 6 texts x 11-13 types: more rows than one batch holds
    with load({"torch": uniner_smol_hf, "onnx": uniner_smol_onnx["fp32"]}[kind], max_new_tokens=MAX_NEW) as ner:
        jobs = [Job([ner.prompt_ids(text, label) for label in labels], text) for text, labels in texts]
        dict(ner.generate_jobs(jobs))
        pool = ner.branch_pool()
        assert not pool._alive and not pool._rows
    assert added == [len(labels) for _, labels in texts]


def test_the_shared_prefix_leaves_every_prompt_a_token_of_its_own():
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix([[7], [7, 8]]) == 0


def test_extract_uses_the_engine_and_finds_the_same_entities(uniner_smol_ggufs):
    text, labels = crossner_texts(per_domain=1)[2]
    with load(uniner_smol_ggufs["q4_k_m"], max_new_tokens=MAX_NEW, batched=False) as ner:
        expected = ner.run(text, labels)
    with load(uniner_smol_ggufs["q4_k_m"], max_new_tokens=MAX_NEW) as ner:
        got = ner.run(text, labels)
    assert got.entities == expected.entities and got.raw == expected.raw and got.entities
