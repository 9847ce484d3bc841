"""The ``uner`` spaCy component on the tiny and the embedded models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import spacy
from spacy import displacy

import uner
from tests.conftest import crossner_texts
from uner.entity import Entity

LABELS = ["person", "organisation", "location", "country", "field"]


def _texts(count: int) -> list[str]:
    return [text for text, _ in crossner_texts(4)][:count]


def _nlp(model, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("uner", config={"model": str(model), "labels": LABELS, "load_options": {"n_threads": 2}, **config})
    return nlp


@pytest.fixture(scope="module")
def embedded(uniner_smol_ggufs):
    return uniner_smol_ggufs["q4_k_m"]


@pytest.mark.parametrize("which", ["tiny", "embedded"])
def test_spans_and_char_offsets_are_the_extractors_entities(which, tiny_spm_ggufs, uniner_smol_ggufs):
    model = tiny_spm_ggufs["f32"] if which == "tiny" else uniner_smol_ggufs["q4_k_m"]
    texts = _texts(4)
    nlp = _nlp(model, load_options={"n_threads": 2, "max_new_tokens": 64})
    with uner.load(model, n_threads=2, max_new_tokens=64) as ner:
        expected = [ner.extract(text, LABELS) for text in texts]
    component = nlp.get_pipe("uner")
    for text, entities in zip(texts, expected):
        before = component.misaligned
        doc = nlp(text)
        found = [(s.start_char, s.end_char, s.label_, s.text) for s in doc.spans["uner"]]
        aligned = [(e.start, e.end, e.label, e.text) for e in entities if doc.char_span(e.start, e.end) is not None]
        assert found == aligned
        assert len(found) + len(doc._.uner_misaligned) == len(entities)
        assert component.misaligned - before == len(doc._.uner_misaligned)
        assert {(e.start_char, e.end_char) for e in doc.ents} <= {(start, end) for start, end, _, _ in found}
    if which == "embedded":
        assert sum(len(e) for e in expected) >= 2  # the embedded model does find entities here


def test_overlapping_answers_all_land_in_spans_and_ents_take_the_longest(tiny_spm_ggufs):
    nlp = _nlp(tiny_spm_ggufs["f32"])
    text = "The University of Toronto hired Geoffrey Hinton."
    doc = nlp.make_doc(text)
    answers = [
        Entity(4, 25, "organisation", "University of Toronto"),
        Entity(18, 25, "location", "Toronto"),
        Entity(32, 47, "person", "Geoffrey Hinton"),
        Entity(41, 47, "person", "Hinton"),
    ]
    doc = nlp.get_pipe("uner").annotate(doc, answers)
    assert [(s.text, s.label_) for s in doc.spans["uner"]] == [(a.text, a.label) for a in answers]
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("University of Toronto", "organisation"),
        ("Geoffrey Hinton", "person"),
    ]


def test_misaligned_answers_are_counted_not_dropped_silently(tiny_spm_ggufs, caplog):
    nlp = _nlp(tiny_spm_ggufs["f32"])
    component = nlp.get_pipe("uner")
    doc = component.annotate(nlp.make_doc("Torontonians love Toronto."), [Entity(0, 7, "location", "Toronto")])
    assert list(doc.spans["uner"]) == [] and component.misaligned == 1
    assert doc._.uner_misaligned == [{"label": "location", "text": "Toronto", "start": 0, "end": 7}]
    assert "token boundaries" in caplog.text
    expanded = _nlp(tiny_spm_ggufs["f32"], alignment_mode="expand")
    doc = expanded.get_pipe("uner").annotate(
        expanded.make_doc("Torontonians love Toronto."), [Entity(0, 7, "location", "Toronto")]
    )
    assert [s.text for s in doc.spans["uner"]] == ["Torontonians"]


def test_nlp_pipe_reads_batches_through_the_engine_and_equals_one_by_one(embedded):
    nlp = _nlp(embedded)
    texts = _texts(6)
    docs = [nlp(text) for text in texts]
    one_by_one = [[(s.start_char, s.end_char, s.label_) for s in doc.spans["uner"]] for doc in docs]
    piped = [[(s.start_char, s.end_char, s.label_) for s in doc.spans["uner"]] for doc in nlp.pipe(texts, batch_size=4)]
    assert piped == one_by_one and any(one_by_one)


def test_displacy_renders_the_entities(embedded):
    nlp = _nlp(embedded, labels=["person", "location"])
    doc = nlp("Barack Obama visited Paris with Angela Merkel.")
    assert doc.ents
    html = displacy.render(doc, style="ent")
    spans_html = displacy.render(doc, style="span", options={"spans_key": "uner"})
    for entity in doc.ents:
        assert entity.text in html and entity.label_ in html
    for span in doc.spans["uner"]:
        assert span.text.split()[0] in spans_html and span.label_ in spans_html


def test_to_disk_stores_the_configuration_not_the_weights(embedded, tmp_path):
    nlp = _nlp(embedded, spans_key="ner_answers")
    text = "Barack Obama visited Paris with Angela Merkel."
    before = [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents]
    nlp.to_disk(tmp_path / "pipeline")
    stored = sum(path.stat().st_size for path in (tmp_path / "pipeline").rglob("*") if path.is_file())
    assert stored < 1024 * 1024  # spaCy's vocabulary and configs, not a 100 MB model
    assert [path.name for path in (tmp_path / "pipeline" / "uner").iterdir()] == ["cfg.json"]
    saved = json.loads((tmp_path / "pipeline" / "uner" / "cfg.json").read_text())
    assert saved["model"] == str(embedded) and saved["labels"] == LABELS and saved["spans_key"] == "ner_answers"
    loaded = spacy.load(tmp_path / "pipeline")
    doc = loaded(text)
    assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == before and "ner_answers" in doc.spans


def test_add_pipe_by_name_works_after_install_without_an_import(tiny_spm_ggufs):
    script = (
        "import spacy; nlp = spacy.blank('en'); "
        f"nlp.add_pipe('uner', config={{'model': {str(tiny_spm_ggufs['f32'])!r}, 'labels': ['person'], "
        "'load_options': {'max_new_tokens': 8}}); "
        "doc = nlp('Barack Obama visited Paris.'); print(type(nlp.get_pipe('uner')).__module__, 'uner' in doc.spans)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["uner.spacy_component", "True"]


def test_a_bad_alignment_mode_is_an_input_error(tiny_spm_ggufs):
    with pytest.raises(Exception, match="alignment_mode"):
        _nlp(tiny_spm_ggufs["f32"], alignment_mode="sloppy")
