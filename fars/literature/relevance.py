"""Whether a retrieved work is relevant enough to cite: it must share the study's own words, not ML's.

A search backend always returns its best-ranked hits, even when the corpus holds nothing on the topic
(a neural-network-repair paper for a ReLU/RMSNorm study). Before a hit is cited it must share
informative words with the hypothesis and topic: words every ML abstract uses ("learning", "model",
"network") do not count, and the shared words must reach the work's title, not only its abstract.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass

from fars.literature.similarity import content_words

# words nearly every ML title or abstract uses: sharing them says nothing about the topic
_GENERIC_TEXT = """learning learn learned model training train trained network neural deep performance task data dataset
    improve improvement better accuracy effect study evaluate evaluation experiment problem small large
    standard simple general efficient effective framework algorithm analysis setting baseline loss
    optimization optimizer machine representation approach larger higher lower change"""
GENERIC_WORDS = frozenset(_GENERIC_TEXT.split())
_TOKEN = re.compile(
    r"[a-z][a-z0-9\-]+|[a-z]|[^\sa-z0-9]"
)  # a word (as content_words reads them), or a mark: ". , ( - :"


@dataclass(frozen=True)
class Relevance:
    """The informative query words a work's title and abstract share, and the verdict."""

    in_title: frozenset[str]
    in_abstract: frozenset[str]

    @property
    def relevant(self) -> bool:
        """Two topic words in the title, or one in the title and three more in the abstract."""
        return len(self.in_title) >= 2 or (len(self.in_title) >= 1 and len(self.in_abstract - self.in_title) >= 3)


@functools.lru_cache(maxsize=8192)  # the corpus's titles and abstracts come back for every project on a topic
def informative_words(text: str) -> frozenset[str]:
    """The terms of ``text`` that say what it is about: its content words less ML's generic ones, and each pair
    of words written side by side ("learning rate" names a topic though "learning" alone does not); British
    spellings folded ("generalisation" reads as "generalization"). A stop word or punctuation between two words
    makes no pair: "algorithmic learning and generalisation" and "Supervised Learning - A Generalisation Point"
    shared a "learning generalization" neither says, and a TD-learning paper was cited for modular addition."""
    words: list[str] = []
    pairs: set[str] = set()
    for run in _runs(text):
        words += run
        pairs |= {f"{a} {b}" for a, b in itertools.pairwise(run) if not {a, b} <= GENERIC_WORDS}
    return frozenset({w for w in words if w not in GENERIC_WORDS} | pairs)


def _runs(text: str) -> list[list[str]]:
    """The runs of content words of ``text`` that no stop word or punctuation interrupts, folded."""
    runs: list[list[str]] = [[]]
    for token in _TOKEN.findall(text.lower()):
        word = _folded(token)
        if word:
            runs[-1].append(word)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


@functools.lru_cache(maxsize=65536)
def _folded(token: str) -> str:
    """A token as a content word, British spellings folded ("" for a stop word or punctuation)."""
    word = content_words(token) if token[0].isalpha() else []
    return word[0].replace("isation", "ization").replace("ise", "ize") if word else ""


def relevance(query: str, title: str, abstract: str | None = None) -> Relevance:
    """How a work (``title``, ``abstract``) relates to ``query`` (the hypothesis and its topic)."""
    asked = informative_words(query)
    return Relevance(
        in_title=asked & informative_words(title),
        in_abstract=asked & informative_words(abstract or ""),
    )
