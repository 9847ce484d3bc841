"""The prompt stem (system line + ``USER: Text:``): its KV is kept from one text to the next
without changing a single generated token."""

import pytest

from tests.conftest import crossner_texts
from uner import load
from uner.engine import Job, _Admission

MAX_NEW = 40


@pytest.fixture(params=["torch", "gguf-f32", "onnx-fp32", "onnx-int4"])
def artifact(request, uniner_smol_hf, uniner_smol_ggufs, uniner_smol_onnx):
    kind, _, variant = request.param.partition("-")
    return {"torch": uniner_smol_hf, "gguf": uniner_smol_ggufs.get(variant), "onnx": uniner_smol_onnx.get(variant)}[
        kind
    ]


def _jobs(ner, texts):
    return [Job([ner.prompt_ids(text, label) for label in labels], text) for text, labels in texts]


def _run(ner, texts) -> dict:
    return dict(ner.generate_jobs(_jobs(ner, texts)))


def test_reusing_the_prompt_stem_gives_the_same_tokens(artifact):
    texts = [(text, labels[:5]) for text, labels in crossner_texts(per_domain=1)]  # 3 texts x 5 types
    with load(artifact, max_new_tokens=MAX_NEW, reuse_stem=False) as ner:
        fresh = _run(ner, texts)
        assert ner.stem_kv.size == 0
    with load(artifact, max_new_tokens=MAX_NEW) as ner:
        stem = ner.prompt_stem()
        assert 10 < len(stem) < len(ner.prompt_ids(*texts[0][:1], texts[0][1][0]))
        kept = _run(ner, texts)
        assert ner.stem_kv.size == len(stem), "the stem's KV was not kept"
        again = _run(ner, texts)  # the second run starts from the kept stem
    assert kept == fresh
    assert again == fresh


def test_a_wrong_stem_kv_changes_the_answers(uniner_smol_hf):
    # the parity above can fail: KV of other ids (a passage of another text, with its entity
    # names) passed off as the stem's changes answers (measured: 3 of 15)
    texts = [(text, labels[:5]) for text, labels in crossner_texts(per_domain=1)]
    with load(uniner_smol_hf, max_new_tokens=MAX_NEW) as ner:
        right = _run(ner, texts)
        stem = ner.prompt_stem()
        other = stem[:1] + ner.prompt_ids(texts[1][0], "person")[len(stem) : 2 * len(stem) - 1]
        pool = ner.branch_pool()
        count = len(other)
        _, cache = pool._forward(
            pool._tensor([other]), pool._tensor([[1] * count]), pool._tensor([list(range(count))]), None
        )
        ner.stem_kv.put(stem, cache)  # another text's KV, kept as if it were the stem's
        wrong = _run(ner, texts)
    assert wrong != right


def test_the_stem_is_reused_only_by_prompts_that_start_with_it():
    stem = [1, 5, 6, 7]
    assert _Admission(0, Job([[1, 5, 6, 7, 9, 2, 3], [1, 5, 6, 7, 9, 2, 4]]), stem).stem == 4
    # the passage's first token merged with the stem's last one: encode everything
    assert _Admission(0, Job([[1, 5, 6, 8, 9, 2, 3], [1, 5, 6, 8, 9, 2, 4]]), stem).stem == 0
    # nothing of the prefix would be left after the stem
    assert _Admission(0, Job([[1, 5, 6, 7, 3], [1, 5, 6, 7, 4]]), stem).stem == 0
    assert _Admission(0, Job([[1, 5, 6, 7, 9, 3]]), ()).stem == 0


def test_llamacpp_keeps_the_stem_across_runs_until_a_per_query_answer(uniner_smol_ggufs, monkeypatch):
    texts = [(text, labels[:4]) for text, labels in crossner_texts(per_domain=1)]
    with load(uniner_smol_ggufs["f32"], max_new_tokens=MAX_NEW) as ner:
        stem = ner.prompt_stem()
        decoded = []
        decode = type(ner).decode_tokens
        monkeypatch.setattr(
            type(ner), "decode_tokens", lambda self, ids, *rest: decoded.append(list(ids)) or decode(self, ids, *rest)
        )
        first = _run(ner, texts)
        assert decoded.count(stem) == 1, "the stem is decoded once for every text of a run"
        second = _run(ner, texts)
        assert decoded.count(stem) == 1, "the next run starts from the kept stem"
        ner.generate(ner.prompt_ids(texts[0][0], texts[0][1][0]))  # the per-query path clears the cache
        assert ner.stem_kv.size == 0
        third = _run(ner, texts)
        assert decoded.count(stem) == 2
    assert first == second == third
