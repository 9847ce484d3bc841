"""Constrained decoding: JSON lists of strings, optionally grounded in the text."""

import json

import numpy as np
import pytest

from tests.conftest import crossner_texts
from uner import load
from uner.constraints import JsonListPicker
from uner.errors import InputError
from uner.parsing import parse_answer
from uner.token_table import TokenTable

PIECES = [b"</s>", b" [", b'"', b"Paris", b'"]', b", ", b"Rome", b"]", b"x", b'"P', b'aris"', b" ", b"\\", b'n"', b"\n"]
TABLE = TokenTable(lambda token: PIECES[token], len(PIECES))


def decode_with(preferences, text=None):
    """Feed the picker logits that prefer each token in turn; return what it chose."""
    picker, chosen = JsonListPicker(TABLE, eos_id=0, text=text), []
    for preferred in preferences:
        logits = np.arange(len(PIECES), dtype=np.float32) * -0.01  # ties broken towards low ids
        logits[preferred] = 10.0
        chosen.append(picker.pick(logits))
        if chosen[-1] == 0:
            break
    return chosen


def test_an_answer_that_is_already_a_json_list_passes_unchanged():
    assert decode_with([1, 2, 3, 4, 0]) == [1, 2, 3, 4, 0]
    assert decode_with([1, 7, 0]) == [1, 7, 0]


def test_tokens_that_break_the_format_are_replaced_by_the_best_allowed_one():
    assert decode_with([8])[0] == 1  # "x" cannot start an answer; " [" can
    assert decode_with([1, 8])[1] == 2  # after "[" only a string or "]"
    assert decode_with([1, 7, 6]) == [1, 7, 0]  # after "]" only EOS


def test_eos_is_refused_until_the_list_is_closed():
    assert decode_with([1, 2, 3, 0])[3] != 0


def test_grounded_strings_must_occur_in_the_text():
    assert decode_with([1, 9, 10, 7, 0], text="Paris is big") == [1, 9, 10, 7, 0]
    chosen = decode_with([1, 2, 6], text="Paris is big")
    assert chosen[2] != 6  # "Rome" is not in the text
    assert decode_with([1, 2, 4], text="Paris is big")[2] != 4  # an empty string is not a span


def test_escapes_are_unescaped_before_the_grounding_check():
    assert decode_with([1, 2, 3, 12, 13], text="Paris\n")[:5] == [1, 2, 3, 12, 13]
    assert decode_with([1, 2, 3, 12, 13], text="Paris")[4] != 13


@pytest.mark.parametrize("kind", ["json", "grounded"])
def test_a_model_that_answers_in_prose_is_held_to_the_format(smollm2_ggufs, kind):
    texts = crossner_texts(per_domain=1)
    with load(smollm2_ggufs["q4_k_m"], max_new_tokens=32) as free:
        unconstrained = [free.answers(text, labels[:4]) for text, labels in texts]
    with load(smollm2_ggufs["q4_k_m"], max_new_tokens=32, constrain=kind) as held:
        constrained = [held.answers(text, labels[:4]) for text, labels in texts]
    assert sum(not raw.startswith("[") for answers in unconstrained for raw in answers.values()) > 3
    for (text, _), answers in zip(texts, constrained):
        for raw in answers.values():
            items = json.loads(raw) if raw.endswith("]") else None  # a list cut by max_new_tokens does not end in ]
            if items is None:
                continue
            assert isinstance(items, list) and all(isinstance(item, str) for item in items), raw
            if kind == "grounded":
                assert all(item and item in text for item in items), (raw, text)
    finished = sum(raw.endswith("]") for answers in constrained for raw in answers.values())
    assert finished >= len(constrained) * 2, constrained


@pytest.mark.parametrize("backend_fixture", ["uniner_smol_hf", "uniner_smol_onnx"])
def test_valid_answers_are_unchanged_by_the_json_constraint(backend_fixture, request):
    artifact = request.getfixturevalue(backend_fixture)
    artifact = artifact["fp32"] if isinstance(artifact, dict) else artifact
    text, labels = crossner_texts(per_domain=1)[1]
    labels = labels[:6]
    with load(artifact, max_new_tokens=40) as free:
        plain = free.answers(text, labels)
    with load(artifact, max_new_tokens=40, constrain="json") as held:
        constrained = held.answers(text, labels)
    valid = [label for label, raw in plain.items() if raw.startswith("[") and raw.endswith("]")]
    assert len(valid) > len(labels) // 2
    for label in valid:
        assert parse_answer(constrained[label]) == parse_answer(plain[label]), label


def test_an_unknown_constraint_is_an_input_error(uniner_smol_ggufs):
    with pytest.raises(InputError, match="constrain"):
        load(uniner_smol_ggufs["q4_k_m"], constrain="xml")


def test_a_newline_inside_the_list_is_refused_as_the_official_parser_cannot_read_it():
    chosen = decode_with([1, 14, 2, 3, 14, 4, 0])  # " [", "\n", '"', Paris, "\n", '"]'
    assert 14 not in chosen and parse_answer(b"".join(PIECES[t] for t in chosen[:-1]).decode().strip()) != []
