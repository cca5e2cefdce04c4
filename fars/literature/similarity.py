"""A bounded text similarity (0 = nothing shared, 1 = the same words) for the novelty check.

Search scores differ between backends (BM25, OpenAlex relevance, none at all for arXiv), so the
novelty check compares a hypothesis with each retrieved work on one scale of its own: the cosine of
their content-word counts, stop words removed and simple plural/verb endings folded.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_WORD = re.compile(r"[a-z][a-z0-9\-]+")
_STOP_TEXT = """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just may me
    might more most must my myself no nor not now of off on once only or other our ours ourselves out
    over own same shall she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up upon very was we were what when where which
    while who whom why will with would you your yours yourself yourselves we our us one two using use
    used based via show shows propose proposed paper approach method methods new work results result"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def content_words(text: str) -> list[str]:
    """Lower-cased content words of ``text``, stop words dropped, common endings folded."""
    words = []
    for word in _WORD.findall(text.lower()):
        if word in STOP_WORDS or len(word) < 3:
            continue
        for suffix in ("ies", "es", "s"):
            if word.endswith(suffix) and len(word) > len(suffix) + 3:
                word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
                break
        words.append(word)
    return words


def text_similarity(a: str, b: str) -> float:
    """Cosine similarity of the content-word counts of two texts, in [0, 1]."""
    ca, cb = Counter(content_words(a)), Counter(content_words(b))
    if not ca or not cb:
        return 0.0
    dot = sum(n * cb[w] for w, n in ca.items())
    norm = math.sqrt(sum(n * n for n in ca.values())) * math.sqrt(sum(n * n for n in cb.values()))
    return min(1.0, dot / norm)
