"""Model-written edits: parsed from the formats capable models use, refused outside the copy, applied, diffed."""

from __future__ import annotations

from pathlib import Path

from fars.code.edits import allowed_path, apply_edits, parse_edits, read_editable, unified_diff
from fars.code.search import change_regions, without_change
from tests.code import transcripts

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
    for path in ("/etc/passwd", "../train.py", "sub/../../x.py", "~/.bashrc", "template.yaml", "__init__.py",
                 "data/train.csv", "C:\\x.py"):  # fmt: skip
        assert allowed_path(path, ["train.py"]) is not None, path
    assert allowed_path("train.py", ["train.py"]) is None and allowed_path("method.py", ["train.py"]) is None


def test_broken_python_and_empty_replies_go_back_as_problems() -> None:
    bad = "train.py\n<<<<<<< SEARCH\nSPREAD = 0.3  # lognormal sigma of the sleep around its nominal length\n=======\nSPREAD = (\n>>>>>>> REPLACE\n"
    applied = apply_edits(parse_edits(bad), SIM, ["train.py"])
    assert any("SyntaxError" in p for p in applied.problems)
    assert (
        "no edit found" in apply_edits(parse_edits("I would change the learning rate."), SIM, ["train.py"]).problems[0]
    )
