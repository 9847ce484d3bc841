"""Jobs and texts that arrive while others decode: the engine's JobFeed, per-job decoding, and
the service that feeds every client's texts into one running batch."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import pytest

from uner.engine import Decoding, EngineStats, Job, decode_jobs
from uner.errors import InputError
from uner.service import ExtractionService, Limits

EOS, VOCAB = 0, 16


class CountingPool:
    """Each branch counts up from its suffix's last token, one per step, and ends (EOS) after
    ``length`` tokens; ``rows`` records how many branches each step carried."""

    def __init__(self, length: int = 5) -> None:
        self.length = length
        self.state: dict[int, list[int]] = {}
        self.rows: list[int] = []
        self._next = 0

    def room(self, prefix_len, suffix_lens, max_new_tokens):
        return len(suffix_lens)

    def _logits(self, token: int) -> np.ndarray:
        row = np.zeros(VOCAB)
        row[token] = 1.0
        return row

    def add(self, prefix, suffixes, stem=0):
        handles, rows = [], []
        for suffix in suffixes:
            handle, self._next = self._next, self._next + 1
            self.state[handle] = [suffix[-1], 0]
            handles.append(handle)
            rows.append(self._logits(suffix[-1]))
        return handles, np.stack(rows)

    def step(self, branches, tokens):
        self.rows.append(len(branches))
        out = []
        for handle in branches:
            state = self.state[handle]
            state[1] += 1
            out.append(self._logits(EOS if state[1] >= self.length else (state[0] + state[1]) % (VOCAB - 1) + 1))
        return np.stack(out)

    def drop(self, branch):
        del self.state[branch]

    def reset(self):
        self.state.clear()


class ScriptedFeed:
    """Hands out ``first`` at once and ``later`` only once the engine has run ``after`` steps."""

    def __init__(self, pool: CountingPool, first: list[Job], later: list[Job], after: int) -> None:
        self.pool, self.ready, self.later, self.after = pool, deque(first), deque(later), after
        self.asked: list[bool] = []

    def next_job(self, wait: bool):
        self.asked.append(wait)
        if not self.ready and self.later and len(self.pool.rows) >= self.after:
            self.ready.extend(self.later)
            self.later.clear()
        if self.ready:
            return self.ready.popleft()
        assert not (wait and self.later), "the engine waited while a job was still to come"
        return None


class _Greedy:
    def pick(self, logits):
        return int(np.argmax(logits))


def _decode(pool, feed, limit=40, stats=None):
    return dict(decode_jobs(pool, feed, lambda job, slot: _Greedy(), EOS, limit, stats))


def test_a_job_arriving_mid_decode_joins_the_running_batch():
    pool = CountingPool(length=6)
    feed = ScriptedFeed(pool, [Job([[1, 2], [1, 3]])], [Job([[1, 4], [1, 5], [1, 6]])], after=2)
    done = _decode(pool, feed)
    assert sorted(done) == [0, 1]
    assert done[0] == [[2, 4, 5, 6, 7, 8], [3, 5, 6, 7, 8, 9]]
    assert 5 in pool.rows  # both jobs' branches decoded in one step
    assert feed.asked[-1] is True  # it ended only when asked with nothing running


def test_a_plain_iterable_is_still_a_feed_that_ends():
    pool = CountingPool(length=3)
    done = _decode(pool, [Job([[1, 2]]), Job([[1, 3]])])
    assert done == {0: [[2, 4, 5]], 1: [[3, 5, 6]]}


def test_each_job_may_bring_its_own_token_limit():
    pool = CountingPool(length=8)
    stats = EngineStats()
    jobs = [Job([[1, 2]], decoding=Decoding(None, 3)), Job([[1, 3]])]
    done = _decode(pool, jobs, limit=5, stats=stats)
    assert [len(ids) for ids in done[0] + done[1]] == [3, 5]
    assert stats.stops == {"limit": 2}


@pytest.fixture(scope="module")
def tiny(tiny_spm_ggufs):
    import uner

    return tiny_spm_ggufs["f32"], uner


def test_the_service_answers_concurrent_submissions_as_extract_does(tiny):
    path, uner = tiny
    texts = ["Barack Obama visited Paris.", "Geoffrey Hinton lives in Toronto.", "Rome is in Italy."] * 3
    with uner.load(path, max_new_tokens=12) as ner:
        expected = [[e.to_dict() for e in ner.extract(text, ["person", "city"])] for text in texts]
    service = ExtractionService(uner.load(path, max_new_tokens=12), Limits())
    try:
        results: dict[int, list] = {}

        def client(index: int) -> None:
            extraction = service.submit([texts[index]], ["person", "city"]).future.result(60)[0]
            results[index] = [e.to_dict() for e in extraction.entities]

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(texts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert [results[i] for i in range(len(texts))] == expected
        assert service.counters.texts == len(texts) and service.counters.queries == 2 * len(texts)
    finally:
        assert service.close(60)


def test_a_text_the_engine_cannot_read_fails_only_its_own_request(tiny):
    path, uner = tiny
    service = ExtractionService(uner.load(path, max_new_tokens=8), Limits(max_label_chars=10**6))
    try:
        too_long = service.submit(["A text."], ["word " * 1000])  # no window leaves room for any text
        fine = service.submit(["Barack Obama visited Paris."], ["person"])
        with pytest.raises(InputError, match="window"):
            too_long.future.result(60)
        assert len(fine.future.result(60)) == 1
    finally:
        assert service.close(60)


def test_an_unbatched_extractor_is_refused(tiny):
    path, uner = tiny
    with uner.load(path, batched=False) as ner, pytest.raises(InputError, match="batched"):
        ExtractionService(ner)


def test_a_smaller_batch_changes_nothing_but_how_many_rows_a_step_carries(tiny_spm_hf):
    import uner

    texts = ["Barack Obama visited Paris.", "Geoffrey Hinton lives in Toronto."]
    labels = ["person", "city", "country"]
    with (
        uner.load(tiny_spm_hf, max_new_tokens=10) as wide,
        uner.load(tiny_spm_hf, max_new_tokens=10, max_batch_rows=2) as narrow,
    ):
        assert [e.raw for e in narrow.run_many(texts, labels)] == [e.raw for e in wide.run_many(texts, labels)]
        assert narrow.branch_pool().room(10, [3, 3, 3], 8) == 2 and wide.branch_pool().room(10, [3, 3, 3], 8) == 3
    with pytest.raises(InputError, match="max_batch_rows"):
        uner.load(tiny_spm_hf, max_batch_rows=0)


def test_stats_without_history_keep_the_same_totals_in_constant_space():
    jobs = [Job([[1, 2], [1, 3]]), Job([[1, 4]], decoding=Decoding(None, 2))]
    full, totals = EngineStats(), EngineStats(history=False)
    _decode(CountingPool(length=6), jobs, stats=full)
    _decode(CountingPool(length=6), jobs, stats=totals)
    assert totals.tokens_per_step == [] and full.tokens_per_step
    assert (totals.steps, totals.rows, totals.generated_tokens) == (
        full.steps,
        sum(full.tokens_per_step),
        full.generated_tokens,
    )
