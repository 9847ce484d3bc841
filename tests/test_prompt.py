from uner.prompt import TEMPLATE, encode_prompt, render_prompt

OFFICIAL = (
    "A virtual assistant answers questions from a user based on the provided text. "
    "USER: Text: Barack Obama visited Paris. ASSISTANT: I've read this text.</s>"
    "USER: What describes person in the text? ASSISTANT:"
)


def test_rendered_prompt_is_byte_identical_to_official_template():
    assert render_prompt("Barack Obama visited Paris.", "person") == OFFICIAL
    assert TEMPLATE.format(text="Barack Obama visited Paris.", label="person") == OFFICIAL


def test_eos_marker_becomes_the_eos_id_not_characters():
    pieces: list[str] = []

    def tokenize(segment: str) -> list[int]:
        pieces.append(segment)
        return [100 + len(pieces)]

    ids = encode_prompt("Barack Obama visited Paris.", "person", tokenize, eos_id=2, bos_id=1)
    assert ids == [1, 101, 2, 102]
    assert "</s>" not in "".join(pieces)
    assert pieces[0].endswith("I've read this text.") and pieces[1].startswith("USER:")


def test_no_bos_when_tokenizer_adds_none():
    ids = encode_prompt("t", "x", lambda s: [7], eos_id=2, bos_id=None)
    assert ids == [7, 2, 7]


def test_turn_after_eos_gets_sentencepiece_dummy_prefix_as_in_training():
    import sentencepiece

    from tests.conftest import LLAMA_TOKENIZER

    sp = sentencepiece.SentencePieceProcessor(model_file=str(LLAMA_TOKENIZER))
    ids = encode_prompt("Barack Obama visited Paris.", "person", sp.encode, eos_id=2, bos_id=1)
    after_eos = ids[ids.index(2) + 1 :]
    assert sp.id_to_piece(after_eos[:2]) == ["▁US", "ER"]
    assert ids[0] == 1 and ids.count(2) == 1
