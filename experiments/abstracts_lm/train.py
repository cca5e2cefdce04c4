"""Train the character-level GPT on ICLR 2022 titles and abstracts and write ``metrics.json``.

Usage: ``python train.py --out_dir DIR --steps 200 --norm rmsnorm ...`` (every knob and component of
template.yaml is a flag; the model, engines and flags are the chargpt template's, whose ``run`` this
calls). The text ships in this folder (``abstracts.jsonl.gz``); nothing is downloaded. The held-out
papers come last in the text, padded so that chargpt's 90/10 cut lands exactly between the two
splits: validation windows lie wholly inside papers never trained on, and are the same fixed characters
for every condition and seed (chargpt's ``eval_windows``).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from experiments.abstracts_lm import SPEC
from experiments.chargpt.train import load_corpus, run
from experiments.metrics import Metrics

DATA = Path(__file__).with_name("abstracts.jsonl.gz")


def document(paper: dict[str, str]) -> str:
    """One paper in the training text: its title, a line break, its abstract, a blank line."""
    return f"{paper['title']}\n{paper['abstract']}\n\n"


def load_papers(path: Path = DATA) -> tuple[list[str], list[str]]:
    """The documents of the training papers and of the held-out papers, in the file's order."""
    try:
        with gzip.open(path, "rt", encoding="ascii") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: unreadable ({exc}); rebuild it with benchmarks/build_abstracts_corpus.py") from None
    train = [document(r) for r in rows if r["split"] == "train"]
    val = [document(r) for r in rows if r["split"] == "val"]
    if not train or not val:
        raise SystemExit(f"{path}: needs papers in both splits; rebuild it with benchmarks/build_abstracts_corpus.py")
    return train, val


def joined(train: list[str], val: list[str]) -> str:
    """The training papers, then the held-out ones, then the fewest newlines that put chargpt's cut at the seam.

    ``load_corpus`` trains on the first 90% of characters; the held-out papers are chosen to be just
    under a tenth of the text, so a handful of trailing newlines moves the cut onto the boundary. The
    cut is checked against ``load_corpus`` itself, so a change there fails loudly instead of leaking.
    """
    head, tail = "".join(train), "".join(val)
    for pad in range(len(tail) + 1):
        if int(0.9 * (len(head) + len(tail) + pad)) == len(head):
            text = head + tail + "\n" * pad
            break
    else:
        raise SystemExit(f"{DATA}: the held-out papers are over a tenth of the text; rebuild it")
    seen_train, _, _ = load_corpus(text)
    if len(seen_train) != len(head):
        raise SystemExit(
            f"chargpt's load_corpus cuts at {len(seen_train)} characters, not at the held-out papers ({len(head)}); "
            "the abstracts template must be updated to its new split"
        )
    return text


def main(argv: list[str] | None = None) -> Metrics:
    """Train the GPT of this template's knobs and components on the abstracts.

    Evaluation is chargpt's: the same 8,192 characters of each split every time (8 stretches of 1,024
    spread over the held-out papers, and over the training ones for the training loss), whatever the
    knobs, components or seed; ``--eval_chars`` sets how many.
    """
    return run(SPEC, joined(*load_papers()), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
