"""The UniNER ``ie_as_qa`` prompt, in one place.

UniNER was trained on FastChat conversations whose turns are joined by ``" "`` after a user
turn and by the EOS token after an assistant turn. Training tokenized each turn on its own, so
the token after EOS carries SentencePiece's dummy prefix (``▁US``, ``ER``). Backends therefore
never tokenize the rendered string: they call :func:`encode_prompt`, which tokenizes the text
segments separately and puts the EOS *id* between them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

SYSTEM = "A virtual assistant answers questions from a user based on the provided text."
USER_ROLE = "USER"
ASSISTANT_ROLE = "ASSISTANT"
READ_REPLY = "I've read this text."
EOS_MARKER = "</s>"

#: The human-readable template (``</s>`` stands for the model's EOS token).
TEMPLATE = (
    f"{SYSTEM} {USER_ROLE}: Text: {{text}} {ASSISTANT_ROLE}: {READ_REPLY}{EOS_MARKER}"
    f"{USER_ROLE}: What describes {{label}} in the text? {ASSISTANT_ROLE}:"
)


def text_turn(text: str) -> str:
    """The passage segment: everything before the first EOS."""
    return f"{SYSTEM} {USER_ROLE}: Text: {text} {ASSISTANT_ROLE}: {READ_REPLY}"


def stem_turn() -> str:
    """The start of every passage segment, the same for every text: its KV can be kept once."""
    return f"{SYSTEM} {USER_ROLE}: Text:"


def question_turn(label: str) -> str:
    """The question segment: everything after the first EOS, ending with the generation prompt."""
    return f"{USER_ROLE}: What describes {label} in the text? {ASSISTANT_ROLE}:"


def render_prompt(text: str, label: str, eos: str = EOS_MARKER) -> str:
    """Render the prompt as a string, with ``eos`` standing for the EOS token.

    >>> render_prompt("Barack Obama visited Paris.", "person")[-52:]
    "text.</s>USER: What describes person in the text? ASSISTANT:"
    """
    return f"{text_turn(text)}{eos}{question_turn(label)}"


def encode_prompt(
    text: str,
    label: str,
    tokenize: Callable[[str], Sequence[int]],
    eos_id: int,
    bos_id: int | None,
) -> list[int]:
    """Token ids of the prompt, built the way UniNER's training tokenized it.

    Args:
        tokenize: the backend's tokenizer for plain text, without special tokens (for
            SentencePiece vocabularies it adds the dummy-prefix space to each segment).
        eos_id: the model's EOS id, placed where the template has ``</s>``.
        bos_id: prepended when the model's tokenizer adds a BOS token, else ``None``.
    """
    ids = [bos_id] if bos_id is not None else []
    ids += tokenize(text_turn(text))
    ids.append(eos_id)
    ids += tokenize(question_turn(label))
    return ids


def encode_stem(tokenize: Callable[[str], Sequence[int]], bos_id: int | None) -> list[int]:
    """Token ids of :func:`stem_turn` as :func:`encode_prompt` starts them. The passage's first
    word could merge with the stem's last token in some vocabulary, so users of the stem check
    that a prompt starts with these ids before reusing their KV."""
    return ([bos_id] if bos_id is not None else []) + list(tokenize(stem_turn()))


def encode_conversation(
    text: str,
    answers: Sequence[tuple[str, str]],
    tokenize: Callable[[str], Sequence[int]],
    eos_id: int,
    bos_id: int | None,
) -> tuple[list[int], list[bool]]:
    """A multi-turn training conversation (one passage, one question per entity type), as ids
    and a loss mask that is True on each answer and the EOS closing it (UniNER's training).

    The passage and each question are tokenized exactly as :func:`encode_prompt` does; an
    answer is tokenized as the continuation of its question (``question + " " + answer``
    minus the question's own ids), which is what the model produces after ``ASSISTANT:``.
    """
    ids = ([bos_id] if bos_id is not None else []) + list(tokenize(text_turn(text))) + [eos_id]
    mask = [False] * len(ids)
    for label, answer in answers:
        question = list(tokenize(question_turn(label)))
        joined = list(tokenize(f"{question_turn(label)} {answer}"))
        if joined[: len(question)] != question:
            raise ValueError(f"the answer {answer!r} changes how the question for {label!r} tokenizes")
        reply = joined[len(question) :] + [eos_id]
        ids += question + reply
        mask += [False] * len(question) + [True] * len(reply)
    return ids, mask
