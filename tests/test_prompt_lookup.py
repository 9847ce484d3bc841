"""The prompt-lookup replay (bench/prompt_lookup.py): drafts copied from the context, steps counted."""

from uner.bench.prompt_lookup import branch_schedule, draft, text_steps


def test_a_draft_copies_what_followed_the_last_occurrence_of_the_longest_matching_ngram():
    context = [5, 6, 7, 8, 9, 1, 6, 7, 3, 4, 2, 6, 7]
    assert draft(context, ngram=2, size=3) == [3, 4, 2]  # "6 7" last seen before "3 4 2"
    assert draft([5, 6, 7, 8, 1, 7], ngram=2, size=2) == [8, 1]  # no "1 7" earlier: falls back to "7"
    assert draft([1, 2, 3], ngram=2, size=4) == []


def test_without_drafts_an_answer_takes_one_step_per_token_after_the_first():
    assert branch_schedule([9, 9], [1, 2, 3, 4], ends_with_eos=True, ngram=0, size=0) == [1, 1, 1, 1]
    assert branch_schedule([9, 9], [1, 2, 3, 4], ends_with_eos=False, ngram=0, size=0) == [1, 1, 1]


def test_accepted_drafts_save_steps_and_rejected_ones_still_cost_tokens():
    prompt = [50, 11, 12, 13, 14, 51]
    copied = branch_schedule(prompt, [11, 12, 13, 14], ends_with_eos=False, ngram=1, size=3)
    assert copied == [4]  # the whole mention in one step of 1 + 3 tokens
    missed = branch_schedule(prompt, [11, 20, 21], ends_with_eos=False, ngram=1, size=2)
    assert missed == [3, 1]  # the draft "12 13" was wrong: one token learnt for three fed


def test_a_text_steps_until_its_longest_answer_is_done():
    steps = text_steps([[9], [9]], [[1], [1, 2, 3]], [True, True], ngram=0, size=0)
    assert steps == [2, 1, 1]
