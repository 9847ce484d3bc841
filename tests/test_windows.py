"""Long texts: overlapping windows cut between sentences, entities merged by offset."""

import re

import pytest

from uner import load
from uner.base import GenerativeExtractor
from uner.windows import split_windows

SENTENCES = [f"Person{i:02d} met Person{i + 1:02d} in Town{i:02d}." for i in range(60)]
LONG_TEXT = " ".join(SENTENCES)


def words(piece: str) -> int:
    return len(piece.split())


def test_windows_fit_the_budget_cover_the_text_and_overlap():
    windows = split_windows(LONG_TEXT, words, budget=40, overlap=10)
    assert len(windows) > 5
    for offset, piece in windows:
        assert LONG_TEXT[offset : offset + len(piece)] == piece and words(piece) <= 40
        assert piece.startswith("Person") and piece.rstrip().endswith(".")  # cut between sentences
    covered = set()
    for offset, piece in windows:
        covered.update(range(offset, offset + len(piece)))
    assert covered == set(range(len(LONG_TEXT)))
    for (a, first), (b, _) in zip(windows, windows[1:]):
        assert a < b < a + len(first)  # progress, with an overlap


def test_a_sentence_longer_than_the_window_is_cut_between_words():
    text = " ".join(f"w{i}" for i in range(100)) + "."
    windows = split_windows(text, words, budget=30, overlap=5)
    assert all(words(piece) <= 30 for _, piece in windows)
    assert all(re.fullmatch(r"(w\d+ ?)+\.?", piece.strip()) for _, piece in windows)


def test_a_short_text_is_one_window():
    assert split_windows("Paris.", words, budget=5, overlap=1) == [(0, "Paris.")]


class KeywordModel(GenerativeExtractor):
    """A stand-in model (whitespace tokens) whose answer is every "TownNN" of the window."""

    name = "keyword"
    eos_id, bos_id, context_length = 0, None, 4096

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.windows_seen: list[str] = []
        self._answers: list[str] = []

    def encode(self, text):
        return [hash(word) % 1000 + 1 for word in text.split()]

    def generate(self, prompt_ids):
        raise AssertionError("generate_jobs() is stubbed")

    def decode(self, ids):
        return self._answers[ids[0]]

    def generate_jobs(self, jobs, stats=None):
        for index, job in enumerate(jobs):
            self.windows_seen.append(job.text)
            self._answers.append(str(sorted(set(re.findall(r"Town\d\d", job.text)))).replace("'", '"'))
            yield index, [[len(self._answers) - 1]] * len(job.prompts)


def test_entities_from_overlapping_windows_are_merged_by_offset():
    model = KeywordModel(max_new_tokens=20, window=120)
    entities = model.extract(LONG_TEXT, ["town"])
    assert len(model.windows_seen) > 3
    expected = [(m.start(), m.end()) for m in re.finditer(r"Town\d\d", LONG_TEXT)]
    assert [(e.start, e.end) for e in entities] == expected  # each once, despite the overlaps
    assert all(LONG_TEXT[e.start : e.end] == e.text for e in entities)


def test_a_window_too_small_for_the_prompt_is_an_input_error():
    from uner.errors import InputError

    with pytest.raises(InputError, match="window"):
        KeywordModel(max_new_tokens=20, window=30).extract(LONG_TEXT, ["town"])


def test_a_real_model_reads_a_text_longer_than_its_window(uniner_smol_ggufs):
    text = " ".join(
        f"{name} was born in {city} ."
        for name, city in [("Barack Obama", "Honolulu"), ("Angela Merkel", "Hamburg"), ("Emmanuel Macron", "Amiens")]
        * 12
    )
    with load(uniner_smol_ggufs["q4_k_m"], max_new_tokens=48, window=160) as ner:
        assert len(ner.windows(text, ["person"])) > 3
        entities = ner.extract(text, ["person"])
    assert all(text[e.start : e.end] == e.text for e in entities)
    assert len({(e.start, e.end) for e in entities}) == len(entities)
    assert max(e.start for e in entities) > len(text) * 3 // 4  # found in the last windows too
