"""Few-shot prompts are scored by their instructions and final item, not their worked examples."""

from __future__ import annotations

import numpy as np

from classifier.features import DENSE_FEATURE_NAMES, FeatureConfig, Featurizer
from classifier.text import PREAMBLE_CHARS, focus_final_item


def labelled_prompt(final: str, shots: int = 3) -> str:
    examples = "".join(
        f"Question: What is {n} plus {n}, written out in digits please?\nAnswer: {2 * n}\n\n" for n in range(shots)
    )
    return "Answer like the examples.\n\n" + examples + f"Question: {final}\nAnswer:"


def test_labelled_frame_keeps_instructions_and_final_item() -> None:
    focused = focus_final_item(labelled_prompt("Which gas do plants absorb?", shots=4))
    assert focused.text == "Answer like the examples.\nQuestion: Which gas do plants absorb?\nAnswer:"
    assert focused.examples == 4


def test_numbered_labels_are_one_label() -> None:
    blocks = [f"Example {n}:\nInput: {n} apples and {n} pears in a basket\nOutput: {2 * n} fruit" for n in range(1, 4)]
    focused = focus_final_item("\n\n".join([*blocks, "Example 4:\nInput: 3 cars and a bus\nOutput:"]))
    assert focused.text == "Example 4:\nInput: 3 cars and a bus\nOutput:"
    assert focused.examples == 3


def test_unlabelled_blocks_ending_in_an_answer_line() -> None:
    shots = [f"Which number is {n} doubled, in the usual sense?\nA. {n}\nB. {2 * n}\nAnswer: B" for n in range(3)]
    focused = focus_final_item("\n\n".join(["Pick one.", *shots, "Which gas do plants absorb?\nA. O2\nB. CO2"]))
    assert focused.text == "Pick one.\nWhich gas do plants absorb?\nA. O2\nB. CO2"
    assert focused.examples == 3


def test_long_instructions_are_cut() -> None:
    text = labelled_prompt("Is 7 prime?").replace("Answer like the examples.", "Read this. " * 100)
    focused = focus_final_item(text)
    assert focused.text.endswith("\nQuestion: Is 7 prime?\nAnswer:")
    assert len(focused.text) == PREAMBLE_CHARS + len("\nQuestion: Is 7 prime?\nAnswer:")


def test_ordinary_text_is_unchanged() -> None:
    code = "def f(x):\n    if x:\n        return 1\n    else:\n        return 2\n" * 10
    prose = "\n\n".join(f"The paragraph {n} talks about the weather at some length, as people do." for n in range(8))
    one_label = "Notes:\n" + "a line of notes that goes on\n" * 20 + "Summary: please write one"
    for text in (code, prose, one_label, "short ask", ""):
        assert focus_final_item(text).text == text
        assert focus_final_item(text).examples == 0


def test_features_ignore_the_worked_examples() -> None:
    featurizer = Featurizer(FeatureConfig(buckets_log2=16))
    few_shot = labelled_prompt("Which gas do plants absorb?", shots=5)
    other_examples = few_shot.replace("plus", "minus")
    a, dense_a = featurizer.transform_one(few_shot)
    b, _ = featurizer.transform_one(other_examples)
    assert a.tolist() == b.tolist()
    assert dense_a[DENSE_FEATURE_NAMES.index("few_shot_examples")] == np.log1p(5)
    # The batch path focuses the same way.
    indices, owner, dense = featurizer.transform_batch([few_shot, "plain ask"])
    assert sorted(indices[owner == 0].tolist()) == sorted(a.tolist())
    assert np.allclose(dense[0], dense_a)


def test_fill_in_the_blank_slots_are_counted_but_identifiers_are_not() -> None:
    featurizer = Featurizer(FeatureConfig(buckets_log2=16))
    blanks = DENSE_FEATURE_NAMES.index("blanks")
    assert featurizer.transform_one("Ann thanked Bo because _ had helped.")[1][blanks] == np.log1p(1)
    assert featurizer.transform_one("def __init__(self, my_name): pass")[1][blanks] == 0.0


def test_only_the_end_is_searched_but_the_instructions_are_kept() -> None:
    text = labelled_prompt("Which gas do plants absorb?", shots=60)
    focused = focus_final_item(text)
    assert focused.text == text[:PREAMBLE_CHARS] + "\nQuestion: Which gas do plants absorb?\nAnswer:"
    assert focused.text.startswith("Answer like the examples.")
    assert 0 < focused.examples < 60
