"""An extractor's life: reuse after a failed or abandoned run, use after close, collection
without close, and calls from several threads."""

from __future__ import annotations

import gc
import threading

import pytest

from uner import load
from uner.engine import Job, decode_jobs
from uner.errors import ExtractorBusy, ExtractorClosed, InputError

LABELS = ["person", "location"]
TEXTS = ["Barack Obama visited Paris.", "Angela Merkel met Emmanuel Macron in Berlin.", "Lionel Messi plays in Miami."]
MAX_NEW = 12


@pytest.fixture(params=["llamacpp", "torch", "onnx"])
def tiny_model(request, tiny_spm_hf, tiny_spm_ggufs, tiny_spm_onnx_fp32):
    return {"llamacpp": tiny_spm_ggufs["f32"], "torch": tiny_spm_hf, "onnx": tiny_spm_onnx_fp32}[request.param]


def _answers(ner, texts=TEXTS):
    return [extraction.raw for extraction in ner.run_many(texts, LABELS)]


def test_an_input_failing_mid_batch_leaves_the_extractor_usable(tiny_model):
    with load(tiny_model, max_new_tokens=MAX_NEW) as ner:
        expected = _answers(ner)
        pools = []
        make_pool = ner.branch_pool
        ner.branch_pool = lambda: pools.append(make_pool()) or pools[-1]
        for _ in range(3):  # repeated failures must not use up sequences or rows either
            with pytest.raises(InputError):
                _answers(ner, [TEXTS[0], 42, TEXTS[1]])  # the second text is pulled while the first decodes
        assert _answers(ner) == expected
        ner.batched = False
        assert _answers(ner) == expected  # the per-query path too
    assert pools and all(_live_rows(pool) == 0 for pool in pools[:3])


def _live_rows(pool) -> int:
    return len(getattr(pool, "_alive", None) or getattr(pool, "_position", {}))


def test_stopping_run_many_early_releases_its_branches(tiny_model):
    # llama.cpp decodes one text at a time by default: two, so the next text is running too
    options = {"parallel_texts": 2} if str(tiny_model).endswith(".gguf") else {}
    with load(tiny_model, max_new_tokens=MAX_NEW, **options) as ner:
        expected = _answers(ner)
        pools = []
        make_pool = ner.branch_pool
        ner.branch_pool = lambda: pools.append(make_pool()) or pools[-1]
        stream = ner.run_many(TEXTS * 3, LABELS)
        next(stream)
        stream.close()
        assert _live_rows(pools[0]) == 0
        assert _answers(ner) == expected
        ner.batched = False
        assert _answers(ner) == expected


def test_the_engine_resets_its_pool_when_a_run_fails_or_is_abandoned():
    class Pool:
        def __init__(self):
            self.resets = 0

        def room(self, prefix_len, suffix_lens, max_new_tokens):
            return len(suffix_lens)

        def add(self, prefix, suffixes, stem=0):
            import numpy as np

            return list(range(len(suffixes))), np.zeros((len(suffixes), 4))

        def step(self, branches, tokens):
            import numpy as np

            return np.zeros((len(branches), 4))

        def drop(self, branch):
            pass

        def reset(self):
            self.resets += 1

    def jobs(fail: bool):
        yield Job([[1, 2, 3], [1, 2, 4]])
        if fail:
            raise InputError("bad input")
        yield Job([[5, 6], [5, 7]])

    class First:
        def pick(self, logits):
            return 1  # never EOS (3): every branch runs to the limit

    failing, abandoned, finished = Pool(), Pool(), Pool()
    with pytest.raises(InputError):
        list(decode_jobs(failing, jobs(True), lambda job, slot: First(), eos_id=3, max_new_tokens=5))
    stream = decode_jobs(abandoned, jobs(False), lambda job, slot: First(), eos_id=3, max_new_tokens=5)
    next(stream)
    stream.close()
    list(decode_jobs(finished, jobs(False), lambda job, slot: First(), eos_id=3, max_new_tokens=5))
    assert (failing.resets, abandoned.resets, finished.resets) == (1, 1, 0)


def test_any_use_after_close_is_a_clear_error(tiny_model):
    ner = load(tiny_model, max_new_tokens=MAX_NEW)
    ner.close()
    for call in (
        lambda: ner.encode("Paris"),
        lambda: ner.extract("Paris", LABELS),
        lambda: ner.answer("Paris", "location"),
        lambda: ner.generate([1, 2, 3]),
    ):
        with pytest.raises(ExtractorClosed, match="already closed"):
            call()
    ner.close()  # a second close is harmless


def test_a_llamacpp_extractor_dropped_without_close_frees_its_model(tiny_spm_ggufs, monkeypatch):
    import llama_cpp

    freed = []
    real_free = llama_cpp.llama_model_free
    monkeypatch.setattr(llama_cpp, "llama_model_free", lambda model: freed.append(1) or real_free(model))
    ner = load(tiny_spm_ggufs["f32"], max_new_tokens=MAX_NEW)
    ner.extract(TEXTS[0], LABELS)
    del ner
    gc.collect()
    assert freed == [1]


def test_one_extractor_called_from_several_threads_answers_each_call_as_alone(tiny_model):
    with load(tiny_model, max_new_tokens=MAX_NEW) as ner:
        expected = {text: ner.run(text, LABELS).raw for text in TEXTS}
        results: dict[int, dict] = {}
        errors: list[BaseException] = []

        def work(index: int) -> None:
            try:
                results[index] = ner.run(TEXTS[index % len(TEXTS)], LABELS).raw
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors
    assert all(results[i] == expected[TEXTS[i % len(TEXTS)]] for i in range(6))


def test_calling_again_while_this_threads_run_many_is_open_is_a_clear_error(tiny_spm_ggufs):
    with load(tiny_spm_ggufs["f32"], max_new_tokens=MAX_NEW) as ner:
        stream = ner.run_many(TEXTS, LABELS)
        next(stream)
        with pytest.raises(ExtractorBusy, match="still open"):
            ner.extract(TEXTS[0], LABELS)
        stream.close()
        assert ner.extract(TEXTS[0], LABELS) is not None


def test_torch_thread_count_is_the_callers_again_after_every_call(tiny_spm_hf):
    import torch

    before = torch.get_num_threads()
    ours = 1 if before != 1 else 2
    with load(tiny_spm_hf, max_new_tokens=MAX_NEW, n_threads=ours) as ner:
        assert torch.get_num_threads() == before
        ner.extract(TEXTS[0], LABELS)
        assert torch.get_num_threads() == before
        ner.batched = False
        ner.extract(TEXTS[0], LABELS)
        assert torch.get_num_threads() == before


@pytest.mark.parametrize("threads", [0, 513, 65536, -1])
def test_thread_counts_out_of_range_are_refused_before_loading(tiny_model, threads):
    with pytest.raises(InputError, match="n_threads between 1 and 512"):
        load(tiny_model, n_threads=threads)
