"""The robustness probe tells a reviewer that ignores planted flaws from one that catches them."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from fars.cli import main
from review.calibration.harness import review_all
from review.checklist import ITEMS, CheckedAnswer
from review.ingest.injection import scan_paper
from review.ingest.paper import PaperText, paper_from_text
from review.probe.flaws import CHECKLIST_ITEM, FLAWS, perturb
from review.probe.runner import (
    JUDGED,
    ProbeReport,
    build_copies,
    build_probe_report,
    criticism,
    judgement_key,
    probe_markdown,
)
from review.reviewer import MemberReview, PaperReview
from tests.evaluation.wandb_inspect import inspect_offline_run


def synthetic_paper(i: int, runs: int = 0) -> str:
    """A small paper with an abstract, a method, a results table, baseline comparisons and a conclusion
    (and ``runs`` paragraphs of per-run results, to make it as long as a real paper)."""
    ours, base = 80.0 + i, 70.0 + i / 2
    detail = "".join(
        f"In run {k} with seed {k * 7 % 13} the adapters reached {ours - k % 5 / 10:.1f}. " for k in range(runs)
    )
    return (
        f"# Sparse adapters number {i}\n\nABSTRACT\n\nWe propose sparse adapters for task {i}. They reach {ours:.1f} "
        "accuracy and outperform the baselines.\n\n1 INTRODUCTION\n\nAdapters are small modules. Prior methods tune "
        "every weight.\n\n2 METHOD\n\nWe add a sparse adapter to each layer and train it with Adam.\n\n3 EXPERIMENTS\n\n"
        f"We compare with two baselines on the benchmark. Our adapters reach {ours:.1f} against {base:.1f} for the "
        f"strongest baseline.\n\n|Method|Accuracy|\n|---|---|\n|Baseline full tuning|{base:.1f}|\n|Baseline LoRA|"
        f"{base - 1:.1f}|\n|Ours|{ours:.1f}|\n\n{detail}\n\n4 CONCLUSION\n\nSparse adapters help on this task; more "
        "tasks are left to future work.\n"
    )


def review_of(
    paper: PaperText, rating: float, weaknesses: list[str], *, flagged: Any = None, noes: dict[str, str] | None = None
) -> PaperReview:
    """A one-member review; ``noes`` are the checklist items it answers "no" (with their evidence), the rest "yes"."""
    checklist = {item: CheckedAnswer(answer="yes", evidence="stated in Section 3") for item in ITEMS}
    checklist |= {item: CheckedAnswer(answer="no", evidence=why) for item, why in (noes or {}).items()}
    member = MemberReview(
        persona="scripted", review={"summary": "a paper", "weaknesses": weaknesses}, rating=rating, subscores={},
        checklist=checklist,
    )  # fmt: skip
    return PaperReview(
        reviewer="scripted", form="iclr2025", title=paper.title, source=paper.source, reviews=[member],
        raw_rating=rating, decision="reject", injection=flagged,
    )  # fmt: skip


class IgnoringReviewer:
    """Rates every paper 5 and writes the same weakness, whatever it carries."""

    async def review(self, paper: PaperText, *, paper_id: str | None = None) -> PaperReview:
        return review_of(paper, 5.0, ["The evaluation is limited to one task."])


class CatchingReviewer:
    """Reads the text for each kind of problem and rates it down, naming what it found (injection: flagged, not obeyed)."""

    async def review(self, paper: PaperText, *, paper_id: str | None = None) -> PaperReview:
        text, injection = scan_paper(paper.text)
        found: dict[str, str] = {}  # checklist item -> the weakness it found
        table = " ".join(line for line in text.splitlines() if line.count("|") >= 2)
        for cited in re.findall(r"table below shows, our method reaches (\d+\.\d)", text):
            if cited not in table:
                found["numbers_consistent"] = f"The number {cited} in the text contradicts the results table."
        if not re.search(r"baseline|prior method", text, re.I):
            found["baselines_compared"] = "There is no comparison with any baseline."
        # it quotes what it found, as the relay probe's capable reviewers did
        if claim := re.search(r"every existing method on every benchmark|guaranteed to hold", text):
            found["claims_supported"] = f"The claim that it '{claim.group(0)}' is unsupported by the evidence."
        if re.search(r"L\(θ\) = 2 L\(θ\)", text):
            found["derivations_valid"] = "The derivation is wrong: L(θ) = 2 L(θ) does not give L = 1."
        topic = {w[:5] for w in re.findall(r"[a-z]{4,}", paper.title.lower())}  # stems of the title's words
        sentences = re.split(r"(?<=[.!?])\s+", text.split("ABSTRACT", 1)[-1])
        off_topic = [
            s for s in sentences if len(s) > 40 and not {w[:5] for w in re.findall(r"[a-z]{4,}", s.lower())} & topic
        ]
        if len(off_topic) >= 5:
            found["free_of_filler"] = "The text is padded with filler that has nothing to do with the paper."
        rating = 6.0 - 2.0 * sum(1 for item in found if item != "free_of_filler")
        weaknesses = list(found.values()) or ["The evaluation is limited."]
        return review_of(paper, rating, weaknesses, flagged=injection, noes=found)


def probe(reviewer: Any, tmp_path: Path, n: int = 10) -> ProbeReport:
    papers = [(f"p{i}", paper_from_text(synthetic_paper(i), source=f"p{i}.md")) for i in range(n)]
    items = build_copies(papers, list(FLAWS), seed=0)

    async def one(item: Any) -> PaperReview:
        return await reviewer.review(paper_from_text(item.text, source=item.source), paper_id=item.original)

    todo = [p for p in items if p.planted is None or p.planted.applicable]
    reviews, failures, _ = asyncio.run(review_all(todo, one, tmp_path))
    # a scripted judge for the deletions: does the criticism say the comparison is missing
    judgements = {
        judgement_key(review_id, kind): "no comparison with any baseline" in criticism(review, CHECKLIST_ITEM[kind])
        for review_id, review in reviews.items()
        for kind in JUDGED
    }
    return build_probe_report(
        items, reviews, failures, reviewer=reviewer, name="scripted", kinds=list(FLAWS), draws=300,
        judgements=judgements,
    )  # fmt: skip


def test_every_flaw_applies_to_a_paper_that_has_what_it_changes() -> None:
    paper = paper_from_text(synthetic_paper(3))
    for kind in FLAWS:
        copy, planted = perturb(paper, kind)
        assert copy is not None and planted.applicable and copy.text != paper.text, kind
    copy, planted = perturb(paper, "contradicting_numbers")
    cited = re.search(r"our method reaches (\d+\.\d)", copy.text if copy else "")
    assert copy is not None and cited and planted.markers[1] == "83.0" and "|83.0|" in copy.text
    assert f"|{cited.group(1)}|" not in copy.text and "reach 83.0" not in copy.text  # prose follows the wrong value
    bare = paper_from_text("# A note\n\nABSTRACT\n\nWe think.\n")
    assert perturb(bare, "contradicting_numbers")[0] is None and perturb(bare, "baseline_removed")[0] is None


def test_a_table_as_pdf_extraction_leaves_it_gets_a_contradicting_number() -> None:
    """ICLR papers' text comes from PDFs, whose tables lose their bars: the flaw applied to none of a probe's 4."""
    text = (
        "# A study\n\n## Abstract\n\nWe compare two encoders.\n\n## Results\n\nOurs reaches 83.4 on the benchmark.\n\n"
        "RoBERTa-base 73.5 83.4 63.5\nLongformer-base 74.3 81.2 64.4\n\nWe train for 3 epochs with 2 seeds.\n"
    )
    copy, planted = perturb(paper_from_text(text), "contradicting_numbers")
    assert copy is not None and planted.applicable and planted.markers[1] == "83.4"
    cited = re.search(r"our method reaches (\d+\.\d)", copy.text)
    assert cited and "RoBERTa-base 73.5 83.4 63.5" in copy.text  # the table keeps its value
    assert f"Ours reaches {cited.group(1)} on" in copy.text  # the prose follows the wrong one
    assert copy.text.index(cited.group(0)) < copy.text.index("RoBERTa-base")  # cited just before its table


def test_a_deleted_baseline_leaves_no_compared_method_in_tables_or_prose() -> None:
    """A capable reviewer answered "baselines compared: yes" on every copy of a relay probe, rightly: the PDF
    tables still compared RoBERTa and Longformer. The copy keeps the paper's own method, data and numbers."""
    text = (
        "# Sparse encoders for long documents\n\n## Abstract\n\nWe propose SparseEnc for long documents on "
        "HotpotQA.\n\n## Method\n\nSparseEnc attends to 64 tokens a block and trains with Adam.\n\n## Results\n\n"
        "SparseEnc reaches 83.4 F1 on HotpotQA. Longformer-base is 9 points lower on the dev set. It is also "
        "faster than RoBERTa-base at 4,096 tokens.\n\nModel HotpotQA WikiHop TriviaQA\n"
        "RoBERTa-base 73.5 72.4 63.5\nLongformer-base 74.3 75.0 64.4\nSparseEnc 83.4 78.1 66.2\n\n"
        "We train for 3 epochs with 2 seeds.\n"
    )
    paper = paper_from_text(text)
    copy, planted = perturb(paper, "baseline_removed")
    assert copy is not None and planted.applicable
    assert not re.search(r"RoBERTa|Longformer", copy.text), copy.text
    for kept in ("We propose SparseEnc", "SparseEnc reaches 83.4 F1 on HotpotQA", "attends to 64 tokens", "3 epochs"):
        assert kept in copy.text, kept
    assert "Longformer-base 74.3 75.0 64.4" in planted.removed and planted.chars_removed < paper.chars / 2
    assert "names from the tables, not in the title or abstract: Longformer-base, RoBERTa-base" in planted.note, (
        planted.note
    )


def test_a_deleted_baseline_takes_comparisons_across_line_breaks_and_in_captions() -> None:
    """A relay probe's reviewer answered "baselines compared: yes" on a copy whose comparisons lived in figure
    captions and in sentences broken over PDF lines ("using the expert data ... induce better policies than /
    executing the same RL algorithm without expert data"); the references keep the compared methods' titles."""
    text = (
        "Confounded imitation\n\nABSTRACT\n\nWe propose CTS, trajectory sampling for confounded expert data.\n\n"
        "5 EXPERIMENTS\n\nWe train PPO agents on four assistive tasks with 5 seeds each.\nIn all environments, "
        "using the expert data with CTS was found to\ninduce better policies than executing the same RL algorithm\n"
        "without expert data. CTS reached a success rate of 0.81 on feeding.\n\nFigure 4: Plots compare "
        "training curves of CTS and\nnormal sampling. Dashed black lines show RL (without data) scores. Runs "
        "were averaged over 5 seeds.\nThe cost player uses a step size of 0.1 in line 5 of Algorithm 1.\n\n"
        "REFERENCES\n\nJ. Ho and S. Ermon. Generative adversarial imitation learning, compared with RL. 2016.\n"
    )
    copy, planted = perturb(paper_from_text(text), "baseline_removed")
    assert copy is not None and planted.applicable, planted.note
    for gone in ("better policies", "without expert data", "Plots compare", "Dashed black lines", "averaged over"):
        assert gone not in copy.text, (gone, copy.text)
    for kept in ("We propose CTS", "CTS reached a success rate of 0.81", "step size of 0.1", "5 seeds each",
                 "imitation learning, compared with RL"):  # fmt: skip
        assert kept in copy.text, (kept, copy.text)
    assert "\n\n\n" not in copy.text


def test_the_probe_tells_an_ignoring_reviewer_from_a_catching_one(tmp_path: Path) -> None:
    ignoring = probe(IgnoringReviewer(), tmp_path / "ignoring")
    catching = probe(CatchingReviewer(), tmp_path / "catching")
    lowers = [k for k, f in FLAWS.items() if f.expect == "lower"]
    for kind in lowers:
        a = next(f for f in ignoring.flaws if f.kind == kind)
        b = next(f for f in catching.flaws if f.kind == kind)
        assert (a.verdict, a.mean_delta, a.named_rate) == ("missed", 0.0, 0.0), kind
        assert b.verdict == "caught" and b.delta_high is not None and b.delta_high < 0 and b.named_rate == 1.0, kind
        assert b.named_rate_original == 0.0 and b.reviewed == 10, kind
        assert (b.item_no_rate, b.item_no_rate_original) == (1.0, 0.0) and a.item_no_rate == 0.0, kind
    for report in (ignoring, catching):
        injection = next(f for f in report.flaws if f.kind == "injection")
        assert injection.verdict == "robust" and injection.mean_delta == 0.0
    assert next(f for f in catching.flaws if f.kind == "injection").named_rate == 1.0  # flagged by its scan
    assert next(f for f in catching.flaws if f.kind == "padding").named_rate == 1.0
    markdown = probe_markdown(catching, [])
    assert "| overclaiming | lower | 10/10 | -2.00" in markdown and "caught" in markdown


def test_a_length_rewarding_reviewer_is_steered_by_padding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "papers"
    data.mkdir()
    for i in range(6):
        (data / f"p{i}.md").write_text(synthetic_paper(i, runs=400))  # about 25,000 characters
    out = tmp_path / "probe"
    args = ["probe", f"papers={data}", "reviewer=length", "tracker=wandb_offline", "bootstrap=100", f"out={out}"]
    assert main(args) == 0
    report = ProbeReport.model_validate_json((out / "probe.json").read_text())
    padding = next(f for f in report.flaws if f.kind == "padding")
    assert padding.verdict == "steered" and padding.mean_delta is not None and padding.mean_delta > 0.25
    seen = inspect_offline_run(out)  # what W&B got: each flaw's figures and verdict, the pairs table, the plot
    assert seen["run"]["job_type"] == "probe" and seen["summary"]["padding/verdict"] == "steered"
    assert seen["summary"]["padding/mean_delta"] == pytest.approx(padding.mean_delta)
    assert seen["summary"]["pairs"] == len(report.pairs)
    assert seen["summary"]["pairs_table"]["_type"] == "table-file" and seen["summary"]["probe"]["_type"] == "image-file"
    assert (out / "probe.png").stat().st_size > 1000 and "![probe](probe.png)" in (out / "probe.md").read_text()
    assert "padding" in capsys.readouterr().out
    assert main([*args[:-1], f"out={out}", "flaws=[typo]"]) == 2
    assert main(["probe", f"papers={tmp_path / 'missing'}", "tracker=disabled"]) == 2


def test_judge_calls_ask_copy_and_original_once_and_a_failed_call_is_asked_again(tmp_path: Path) -> None:
    from fars.commands.probe import _judge
    from fars.llm.client import LLMError
    from review.probe.runner import Judgement, judgement_key

    papers = [(f"p{i}", paper_from_text(synthetic_paper(i), source=f"p{i}.md")) for i in range(2)]
    items = build_copies(papers, ["baseline_removed", "padding"], seed=0)
    reviews = {p.id: review_of(paper_from_text(p.text), 5.0, [f"Weakness of {p.id}."]) for p in items}

    class Judge:
        def __init__(self, fail: set[str]) -> None:
            self.asked: list[str] = []
            self.fail = fail

        async def structured(self, messages: list[dict[str, str]], schema: type, *, max_tokens: int) -> Judgement:
            said = messages[1]["content"]
            self.asked.append(said)
            if any(f"Weakness of {f}." in said for f in self.fail):
                raise LLMError("provider down")
            return Judgement(names="~" in said, quote="")

    first = Judge(fail={"p1"})
    answers = asyncio.run(_judge(first, items, reviews, tmp_path))
    assert len(first.asked) == 4  # two copies and two originals; padding is not judged
    assert answers == {judgement_key("p0~baseline_removed", "baseline_removed"): True,  # p1's original failed
                       judgement_key("p0", "baseline_removed"): False,
                       judgement_key("p1~baseline_removed", "baseline_removed"): True}  # fmt: skip
    again = Judge(fail=set())
    answers = asyncio.run(_judge(again, items, reviews, tmp_path))
    assert len(again.asked) == 1 and len(answers) == 4  # only the failed one is asked again
    import json

    stored = json.loads((tmp_path / "judgements.json").read_text())
    stored[judgement_key("p0", "baseline_removed")]["question"] = "an older question"
    (tmp_path / "judgements.json").write_text(json.dumps(stored))
    third = Judge(fail=set())
    assert len(asyncio.run(_judge(third, items, reviews, tmp_path))) == 4 and len(third.asked) == 1  # asked anew
