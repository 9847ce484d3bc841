"""Training conversations for uniner-smol-135m, built from the train and dev splits only.

One conversation per sentence: the passage, then one question per entity type asked, each
answered with the JSON list of its mentions (``[]`` for a type absent from the sentence), the
way UniNER's Pile-NER conversations are built. What a conversation asks is the recipe's to
choose, and the ablations measure it:

- ``negatives``: how many absent types of the sentence's dataset are asked besides every
  present one (``None`` asks every type of the dataset, as v1 did).
- ``vary_names``: entity-type names varied as UniNER's data varies them: synonyms ("writer" /
  "author"), British or American spelling, plural, Title or UPPER case.
- ``vary_case``: some sentences lower-cased, and some of those stripped of standalone
  punctuation, as MIT-movie-like queries are (mentions change with the text, so every answer
  stays a substring of its passage).

The evaluation files (CrossNER's ``test.txt`` / ``*.json``, CoNLL's ``test.txt``, MIT movie's
``engtest.bio``) feed nothing: they are read only to drop the train/dev sentences they also hold
(CrossNER's splits share 28 sentences with its test files).
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from pathlib import Path

from uner.eval_data import Passage, read_bio, read_queries

#: dataset -> its train and dev splits under ../shared/data (never a test split)
TRAIN_SPLITS: dict[str, tuple[str, ...]] = {
    "conll2003": ("conll2003/train.txt", "conll2003/valid.txt"),
    "crossner_ai": ("crossner_ai/train.txt", "crossner_ai/dev.txt"),
    "crossner_literature": ("crossner_literature/train.txt", "crossner_literature/dev.txt"),
    "crossner_music": ("crossner_music/train.txt", "crossner_music/dev.txt"),
    "mit_movie": ("mit_movie/engtrain.bio",),
}

#: every evaluation file under ../shared/data: no sentence of theirs is trained on
EVAL_FILES = (
    "crossner_ai/CrossNER_AI.json",
    "crossner_literature/CrossNER_literature.json",
    "crossner_music/CrossNER_music.json",
    "crossner_ai/test.txt",
    "crossner_literature/test.txt",
    "crossner_music/test.txt",
    "conll2003/test.txt",
    "conll2003/crossner/test.txt",
    "mit_movie/engtest.bio",
)

#: share of each dataset in every prefix of the conversation stream (a run takes the prefix
#: that fills its token budget); a dataset that runs out drops out, the others go on in MIX
MIX = {"conll2003": 0.3, "mit_movie": 0.2, "crossner_ai": 0.17, "crossner_literature": 0.17, "crossner_music": 0.16}

#: canonical type (as the eval files name it) -> names meaning the same thing
SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("people", "person name", "individual"),
    "organization": ("organisation", "organization name"),
    "location": ("place", "geographic location"),
    "country": ("nation",),
    "program language": ("programming language",),
    "researcher": ("scientist",),
    "metrics": ("metric", "evaluation metric"),
    "field": ("research field", "field of study"),
    "writer": ("author",),
    "book": ("book title",),
    "literary genre": ("genre of literature",),
    "award": ("prize",),
    "magazine": ("periodical",),
    "musical artist": ("musician", "music artist"),
    "music genre": ("musical genre",),
    "musical instrument": ("instrument",),
    "band": ("music group",),
    "song": ("song title",),
    "director": ("film director",),
    "title": ("movie title", "film title"),
    "genre": ("movie genre", "film genre"),
    "character": ("character name",),
    "ratings average": ("average rating",),
}
_PLURAL_EXCEPTIONS = {
    "person": "persons",
    "metrics": "metrics",
    "people": "people",
    "field of study": "fields of study",
}
_PUNCTUATION = set(string.punctuation)


@dataclass(frozen=True)
class Recipe:
    """What each conversation asks, and how its surface varies."""

    negatives: int | None = 3
    vary_names: bool = True
    vary_case: bool = True
    lower_share: float = 0.15  # of sentences lower-cased (half of them also lose punctuation)


@dataclass(frozen=True)
class Conversation:
    text: str
    answers: tuple[tuple[str, str], ...]  # (type name asked, JSON answer), in asking order
    dataset: str


def plural(name: str) -> str:
    if name in _PLURAL_EXCEPTIONS:
        return _PLURAL_EXCEPTIONS[name]
    head, _, last = name.rpartition(" ")
    if last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def vary_name(name: str, rng: random.Random) -> str:
    """Half the time the eval files' own name; else a synonym, plural or other case of it."""
    roll = rng.random()
    if roll < 0.5:
        return name
    if roll < 0.75 and name in SYNONYMS:
        name = rng.choice(SYNONYMS[name])
    elif roll < 0.85:
        name = plural(name)
    style = rng.random()
    if style < 0.15:
        return name.title()
    if style < 0.22:
        return name.upper()
    if style < 0.3:
        return name.replace(" ", "_")
    return name


def vary_passage(passage: Passage, rng: random.Random, share: float) -> Passage:
    """``passage`` itself, or (``share`` of the time) lower-cased and maybe without punctuation."""
    if rng.random() >= share:
        return passage
    text, mentions = passage.text.lower(), {t: [m.lower() for m in ms] for t, ms in passage.mentions.items()}
    if rng.random() < 0.5:
        inside = {token for ms in mentions.values() for m in ms for token in m.split()}
        kept = [t for t in text.split() if t in inside or not all(c in _PUNCTUATION for c in t)]
        if kept:
            text = " ".join(kept)
    return Passage(text, mentions)


def ask(passage: Passage, types: list[str], recipe: Recipe, rng: random.Random) -> list[str]:
    """The types one conversation asks, in random order: every present type plus negatives."""
    present = [t for t in types if passage.mentions.get(t)]
    absent = [t for t in types if not passage.mentions.get(t)]
    if recipe.negatives is not None:
        absent = rng.sample(absent, min(recipe.negatives, len(absent)))
    chosen = present + absent
    return rng.sample(chosen, len(chosen))


def conversation(passage: Passage, types: list[str], dataset: str, recipe: Recipe, rng: random.Random) -> Conversation:
    if recipe.vary_case:
        passage = vary_passage(passage, rng, recipe.lower_share)
    answers = []
    for label in ask(passage, types, recipe, rng):
        asked = vary_name(label, rng) if recipe.vary_names else label
        answers.append((asked, json.dumps(passage.mentions.get(label, []), ensure_ascii=False)))
    return Conversation(passage.text, tuple(answers), dataset)


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def evaluated_texts(data: Path) -> set[str]:
    """Every sentence of the evaluation files, case and spacing folded."""
    return {_key(query.text) for file in EVAL_FILES if (data / file).is_file() for query in read_queries(data / file)}


def read_splits(data: Path, exclude: frozenset[str] = frozenset()) -> dict[str, tuple[list[Passage], list[str]]]:
    """Every train/dev sentence (with at least one token, in no evaluation file) per dataset,
    and the dataset's types."""
    held_out, out = evaluated_texts(data), {}
    for dataset, files in TRAIN_SPLITS.items():
        if dataset in exclude:
            continue
        passages, types = [], {}
        for file in files:
            found, file_types = read_bio(data / file)
            passages += [p for p in found if p.text.strip() and _key(p.text) not in held_out]
            types.update(dict.fromkeys(file_types))
        out[dataset] = (passages, list(types))
    return out


def conversation_stream(
    data: Path, recipe: Recipe, seed: int, exclude: frozenset[str] = frozenset()
) -> list[Conversation]:
    """Every sentence of every dataset once, shuffled per dataset and interleaved by :data:`MIX`."""
    rng = random.Random(seed)
    queues = {}
    for dataset, (passages, types) in read_splits(data, exclude).items():
        order = rng.sample(passages, len(passages))
        queues[dataset] = [conversation(p, types, dataset, recipe, rng) for p in order]
    stream, taken = [], dict.fromkeys(queues, 0)
    while any(taken[d] < len(q) for d, q in queues.items()):
        live = [d for d in queues if taken[d] < len(queues[d])]
        # the dataset furthest below its share of the stream so far goes next
        dataset = min(live, key=lambda d: taken[d] / MIX[d])
        stream.append(queues[dataset][taken[dataset]])
        taken[dataset] += 1
    return stream
