"""Model-written edits: parsed from the formats capable models use, refused outside the copy, applied, diffed."""

from __future__ import annotations

from pathlib import Path

from fars.code.edits import allowed_path, apply_edits, parse_edits, read_editable, unified_diff
from fars.code.search import EXAMPLE_HEAD, change_regions, without_change
from tests.code import transcripts
from tests.code.harness import bare_search

SIM = read_editable(Path(__file__).resolve().parents[2] / "experiments" / "simulated", ["train.py"])


def test_search_replace_blocks_and_whole_files_are_parsed() -> None:
    edits = parse_edits(transcripts.EMA + "\n" + transcripts.LABEL_SMOOTHING)
    assert [(e.path, e.search is None) for e in edits] == [("train.py", False), ("method.py", True)]
    assert "0.99 ** (args.steps / 10)" in edits[0].replace and "label_smoothing=0.1" in edits[1].replace
    assert edits[0].label() == "train.py: replace 1 line(s)" and edits[1].label() == "method.py: whole file"


def test_a_good_edit_applies_parses_and_shows_its_diff() -> None:
    applied = apply_edits(parse_edits(transcripts.EMA), SIM, ["train.py"])
    assert applied.problems == [] and set(applied.files) == {"train.py"}
    diff = unified_diff(SIM, {**SIM, **applied.files})
    assert diff.startswith("--- a/train.py\n+++ b/train.py") and diff.count("\n+    accuracy +=") == 2
    regions = change_regions(SIM["train.py"], applied.files["train.py"])
    assert len(regions) == 2  # two insertions around an unchanged line: two parts to ablate
    first_out = without_change(SIM["train.py"], applied.files["train.py"], 0)
    assert "0.99 **" not in first_out and "int(args.width) >= 128" in first_out


def test_a_misquoted_search_is_refused_with_the_closest_line() -> None:
    applied = apply_edits(parse_edits(transcripts.BROKEN_EDIT), SIM, ["train.py"])
    assert applied.files == {}
    assert len(applied.problems) == 1 and "SEARCH text is not in the file" in applied.problems[0]
    assert "closest line is 'accuracy = 0.9 - 0.08 * (math.log10(float(args.lr))" in applied.problems[0]


def test_edits_outside_the_copy_or_its_editable_files_are_refused() -> None:
    applied = apply_edits(parse_edits(transcripts.LEAVE_THE_COPY), SIM, ["train.py"])
    assert any("leaves the working copy" in p for p in applied.problems)
    assert "../../../../fars/sandbox/__init__.py" not in applied.files
    for path in (
        "/etc/passwd",
        "../train.py",
        "sub/../../x.py",
        "~/.bashrc",
        "template.yaml",
        "__init__.py",
        "data/train.csv",
        "C:\\x.py",
    ):
        assert allowed_path(path, ["train.py"]) is not None, path
    assert allowed_path("train.py", ["train.py"]) is None and allowed_path("method.py", ["train.py"]) is None


def test_broken_python_and_empty_replies_go_back_as_problems() -> None:
    bad = "train.py\n<<<<<<< SEARCH\nSPREAD = 0.3  # lognormal sigma of the sleep around its nominal length\n=======\nSPREAD = (\n>>>>>>> REPLACE\n"
    applied = apply_edits(parse_edits(bad), SIM, ["train.py"])
    assert any("SyntaxError" in p for p in applied.problems)
    assert (
        "no edit found" in apply_edits(parse_edits("I would change the learning rate."), SIM, ["train.py"]).problems[0]
    )


# -- the format the prompt describes is the format the parser reads ---------------------------------------------


def _prompt_example() -> str:
    """The example reply as the model reads it: cut from a rendered draft prompt, not from a constant."""
    prompt = bare_search("simulated")._prompt("n0", "draft", None)[-1]["content"]
    assert prompt.count(EXAMPLE_HEAD) == 1
    return prompt.split(EXAMPLE_HEAD, 1)[1]


def test_the_example_in_the_prompt_parses_and_applies_as_its_text_says() -> None:
    example = _prompt_example()
    edits = parse_edits(example)
    # two blocks under one path line (the second has none of its own), then a new file written whole
    assert [(e.path, e.search is None, e.problem) for e in edits] == [
        ("train.py", False, ""), ("train.py", False, ""), ("method.py", True, ""),
    ]  # fmt: skip
    current = {
        "train.py": "def lr_factor(step: int, total: int) -> float:\n    return 1.0\n\n\nfor step in range(10):\n"
        "    factor = 1.0\n    print(factor)\n"
    }
    applied = apply_edits(edits, current, ["train.py"])
    assert applied.problems == []
    assert "return min(1.0, (step + 1) / max(1, total // 10))" in applied.files["train.py"]
    assert "    factor = lr_factor(step, args.steps)\n    print(factor)" in applied.files["train.py"]
    assert "label_smoothing=0.1" in applied.files["method.py"] and applied.files["method.py"].endswith(")\n")


def test_a_reply_with_one_misquoted_block_changes_no_file_and_says_which_block() -> None:
    applied = apply_edits(parse_edits(transcripts.HALF_RIGHT), SIM, ["train.py"])
    assert applied.files == {}  # the first block was right, yet nothing is applied: no half-applied file
    assert applied.problems == [
        "train.py, edit 2: the SEARCH text is not in the file (it must match exactly, indentation included); the "
        "closest line is 'accuracy = 0.9 - 0.08 * (math.log10(float(args.lr)) + 2.5) ** 2 + 0.01 * "
        "math.log2(int(args.width) / 128)'"
    ]


def test_unreadable_ambiguous_and_empty_blocks_are_refused_with_what_to_do() -> None:
    line = '    accuracy += 0.02 * (args.optimizer == "adam") + 0.01 * (args.regularizer == "dropout")'
    cut = f"train.py\n<<<<<<< SEARCH\n{line}\n=======\n{line}\n    accuracy += 0.03\n"  # no REPLACE line
    edits = parse_edits(cut)
    assert [e.problem for e in edits] == ["the block at line 2 of your reply (train.py) has no >>>>>>> REPLACE line"]
    assert apply_edits(edits, SIM, ["train.py"]).problems == [edits[0].problem]
    no_divider = parse_edits(f"train.py\n<<<<<<< SEARCH\n{line}\n>>>>>>> REPLACE\n")
    assert "has no ======= line" in no_divider[0].problem
    twice = {"train.py": "x = 1\ny = 2\nx = 1\n"}
    ambiguous = apply_edits(parse_edits("train.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 3\n>>>>>>> REPLACE\n"), twice,
                            ["train.py"])  # fmt: skip
    assert ambiguous.files == {} and ambiguous.problems == [
        "train.py, edit 1: the SEARCH text occurs 2 times in the file; quote more lines so it occurs once"
    ]
    empty = apply_edits(parse_edits("train.py\n<<<<<<< SEARCH\n=======\nx = 3\n>>>>>>> REPLACE\n"), twice, ["train.py"])
    assert "the SEARCH part is empty" in empty.problems[0]
    orphan = apply_edits(parse_edits("<<<<<<< SEARCH\nx = 1\n=======\nx = 3\n>>>>>>> REPLACE\n"), twice, ["train.py"])
    assert orphan.problems == ["an edit names no file; put the file's path on a line of its own above its first block"]


def test_decorated_paths_fenced_blocks_and_a_following_whole_file_are_read_in_order() -> None:
    reply = (
        "Two changes.\n\n**`train.py`:**\n```python\n<<<<<<< SEARCH\nSPREAD = 0.3  # lognormal sigma of the sleep "
        "around its nominal length\n=======\nSPREAD = 0.2  # less spread\n>>>>>>> REPLACE\n```\n\n### method.py\n"
        "```python\nX = 1\n```\n\nA snippet of prose, under no path, is not an edit:\n```python\nprint('hi')\n```\n"
    )
    edits = parse_edits(reply)
    assert [(e.path, e.search is None, e.replace) for e in edits] == [
        ("train.py", False, "SPREAD = 0.2  # less spread"), ("method.py", True, "X = 1\n"),
    ]  # fmt: skip
    applied = apply_edits(edits, SIM, ["train.py"])
    assert applied.problems == [] and set(applied.files) == {"train.py", "method.py"}
    deleting = "train.py\n<<<<<<< SEARCH\nSPREAD = 0.3  # lognormal sigma of the sleep around its nominal length\n=======\n>>>>>>> REPLACE\n"
    gone = SIM["train.py"].replace("SPREAD = 0.3  # lognormal sigma of the sleep around its nominal length\n", "")
    assert apply_edits(parse_edits(deleting), SIM, ["train.py"]).files["train.py"] == gone  # the line, not a blank
