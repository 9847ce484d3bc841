"""The loop guard: an answer ends once what it could still generate cannot change its parse."""

import random

import numpy as np
import pytest

from uner.engine import EngineStats, Job, decode_jobs, greedy_continuation
from uner.loop_guard import AnswerGuard, LoopGuardSettings, stop_reason
from uner.parsing import close_cut_list, parse_answer
from uner.token_table import TokenTable

PIECES = [b"</s>", b" [", b'"', b"Paris", b'"]', b'", ', b"Rome", b"]", b"x", b"\n", b" ", b"]\n", b"\xc2\xa0", b"["]
TABLE = TokenTable(lambda token: PIECES[token], len(PIECES))
EOS = 0
SMALL = LoopGuardSettings(max_period=8, min_repeats=3, min_tokens=6)


def text_of(ids):
    return b"".join(PIECES[token] for token in ids).decode("utf-8", errors="replace")


def cut(ids, settings=SMALL):
    """The ids the guard lets through, and why it stopped (None: it never did)."""
    guard = AnswerGuard(TABLE, settings)
    for index, token in enumerate(ids):
        if (reason := guard.feed(token)) is not None:
            return ids[: index + 1], reason
    return ids, None


def test_a_closed_list_ends_the_answer_at_its_bracket():
    ids = [1, 2, 3, 4, 8, 8, 3]  # [“Paris”] then more text
    kept, reason = cut(ids)
    assert (kept, reason) == ([1, 2, 3, 4], "settled")
    assert parse_answer(text_of(kept).strip()) == parse_answer(text_of(ids).strip()) == ["Paris"]


def test_an_answer_that_is_not_a_list_ends_at_its_first_character():
    assert cut([10, 8, 1, 2, 3, 4]) == ([10, 8], "settled")  # leading spaces do not count


def test_a_newline_inside_the_list_settles_it_as_the_parser_reads_it():
    ids = [1, 2, 3, 9, 4]  # the official regex's "." stops at the newline: the answer parses to []
    assert cut(ids) == ([1, 2, 3, 9], "settled")
    assert parse_answer(text_of(ids).strip()) == []


def test_a_non_ascii_first_character_turns_the_guard_off():
    assert cut([12, 1, 2, 3, 4, 8]) == ([12, 1, 2, 3, 4, 8], None)  # str.strip() removes U+00A0


def test_a_repeated_mention_is_cut_once_it_has_cycled_long_enough():
    ids = [1, 2, 3] + [5, 3] * 10
    kept, reason = cut(ids)
    # "Paris" '", ' three times over: the 6 tokens from the first mention's end form the cycle
    assert reason == "loop" and kept == [1, 2, 3, 5, 3, 5, 3, 5]
    assert "]" not in text_of(kept) and parse_answer(text_of(kept).strip()) == []


def test_a_list_of_distinct_mentions_is_never_cut():
    ids = [1, 2, 3, 5, 6, 5, 3, 5, 6, 4]  # Paris, Rome, Paris, Rome, Paris] : repeats too few
    assert cut(ids, LoopGuardSettings(max_period=8, min_repeats=4, min_tokens=8)) == (ids[:10], "settled")


def test_settled_cuts_never_change_the_parse_of_any_answer():
    rng = random.Random(0)
    for _ in range(5000):
        # answers shaped like real ones: spaces or newlines, then mostly a list
        lead = [rng.choice([10, 9]) for _ in range(rng.randrange(3))] + [rng.choice([1, 13, 13, 8])]
        ids = lead + [rng.choice([2, 3, 3, 5, 6, 4, 7, 9, 11, 10]) for _ in range(rng.randrange(10))]
        kept, reason = cut(ids, LoopGuardSettings(max_period=1, min_repeats=1000, min_tokens=1000))
        assert parse_answer(text_of(kept).strip()) == parse_answer(text_of(ids).strip()), ids
        if reason is None:
            assert kept == ids


def test_stop_reason_replays_the_guard():
    looped, _ = cut([1, 2, 3] + [5, 3] * 10, LoopGuardSettings())
    assert stop_reason([1, 2, 3, 4], 256, TABLE) == "settled"
    assert stop_reason([1, 2, 3, 4], 256, None) == "eos"
    assert stop_reason([1, 2, 3], 3, TABLE) == "limit"
    assert stop_reason([1, 2, 3, 4, 8], 256, TABLE) == "eos"  # it ran unguarded: the guard would have cut earlier
    settings = LoopGuardSettings(max_period=8, min_repeats=3, min_tokens=6)
    assert stop_reason([1, 2, 3, 5, 3, 5, 3, 5], 256, TABLE, settings) == "loop"
    assert looped  # default settings leave a short cycle alone


def test_close_cut_list_keeps_the_complete_mentions():
    assert close_cut_list('["Paris", "Rome", "Pa') == '["Paris", "Rome"]'
    assert close_cut_list('["Paris", "Rome"') == '["Paris", "Rome"]'
    assert close_cut_list('["Pa') == "[]"
    assert close_cut_list('["a\\"b", "c') == '["a\\"b"]'
    assert close_cut_list('["Paris"]') == '["Paris"]'  # closed already: unchanged
    assert close_cut_list("no list") == "no list"
    assert parse_answer(close_cut_list('["Paris", "Rome", "Paris", "Ro')) == ["Paris", "Rome"]


class LoopingPool:
    """A pool whose every branch answers ``[“Paris”, “Paris”, ...`` forever (token 1, then 2 3 5 ...)."""

    def __init__(self):
        self.position = {}
        self.steps = 0

    def room(self, prefix_len, suffix_lens, max_new_tokens):
        return len(suffix_lens)

    def _logits(self, token):
        row = np.zeros(len(PIECES), dtype=np.float32)
        row[token] = 1.0
        return row

    def add(self, prefix, suffixes, stem=0):
        handles = list(range(len(self.position), len(self.position) + len(suffixes)))
        self.position.update({h: 0 for h in handles})
        return handles, np.stack([self._logits(1) for _ in handles])

    def step(self, branches, tokens):
        self.steps += 1
        script = [2, 3, 5]  # after " [": '"', Paris, '", ' then Paris, '", ' ...
        rows = []
        for handle in branches:
            self.position[handle] += 1
            p = self.position[handle]
            rows.append(self._logits(script[p - 1] if p <= 3 else (3 if p % 2 == 0 else 5)))
        return np.stack(rows)

    def drop(self, branch):
        pass

    def reset(self):
        pass


@pytest.mark.parametrize("guarded", [True, False])
def test_the_engine_and_the_per_query_loop_cut_a_loop_at_the_same_token(guarded):
    settings = LoopGuardSettings(max_period=8, min_repeats=3, min_tokens=6)
    make_guard = (lambda: AnswerGuard(TABLE, settings)) if guarded else (lambda: None)
    stats = EngineStats()
    pool = LoopingPool()
    jobs = [Job([[7, 7], [7, 8]])]
    outputs = dict(decode_jobs(pool, jobs, lambda job, slot: _Argmax(), EOS, 40, stats, make_guard))[0]
    alone = LoopingPool()
    handle = alone.add([], [[7]])[0][0]
    single = greedy_continuation(
        alone._logits(1), lambda token: alone.step([handle], [token])[0], EOS, 40, make_guard()
    )
    assert outputs == [single, single]
    if guarded:
        assert len(single) < 40 and stats.stops == {"loop": 2} and stats.runaway_steps == 0
    else:
        assert len(single) == 40 and stats.stops == {"limit": 2} and stats.runaway_steps == stats.steps == 39


class _Argmax:
    def pick(self, logits):
        return int(np.argmax(logits))
