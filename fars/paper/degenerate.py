"""Degenerate model prose: text a weak model writes about a study that says nothing, found so it can be replaced.

Schema-constrained decoding makes even a 135M model return valid objects, but their strings are often
echoes: the schema's field names and descriptions ("Hypothesis: A testable hypothesis."), the prompt
read back, placeholders (``strengths_1``, ``<title>``), loops, or words with no tie to the study.
``degenerate_reasons`` names every such problem of one text; an empty list means the text may stand.
It is the reviewer's detector (``review.degenerate.value_problems``: placeholders, loops, repeated
sentences, field names, the schema's words) with what prose about a study must also do: have a few
words, not open with a label or boilerplate, not read the prompt back, not go round one phrase of
content words, and share a word with the study. Callers count what they checked and what they replaced,
so the RunRecord can say how often the model's own words were used.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from fars.literature.similarity import content_words
from review.degenerate import LOOPS, value_problems, words_of

_FIELD_PREFIX = re.compile(r"^\s*([A-Za-z][A-Za-z _]{1,40}):\s")
_GENERIC = {
    "hypothesis",
    "testable",
    "claim",
    "setting",
    "effect",
    "paper",
    "study",
    "approach",
    "proposal",
    "method",
    "result",
    "results",
    "title",
    "abstract",
    "introduction",
    "discussion",
    "theoretical",
    "framework",
    "new",
    "novel",
    "research",
    "work",
    "experiment",
    "experiments",
    "show",
    "shows",
    "propose",
    "proposed",
    "short",
    "specific",
    "rationale",
    "statement",
    "text",
    "field",
    "example",
    "value",
    "values",
    "description",
}
_GENERIC_FOLDED = _GENERIC | {w for g in _GENERIC for w in content_words(g)}
# the first content word of a short text (a title) that marks it as the schema's boilerplate; no ICLR
# 2022 title of the 459 starts with one
_BOILERPLATE_HEADS = {
    w
    for g in ("proposal", "approach", "framework", "theoretical", "testable", "hypothesis", "novel")
    for w in content_words(g)
}


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def degenerate_reasons(
    text: str,
    *,
    echoes: Iterable[str] = (),
    prompt: str = "",
    field_names: Iterable[str] = (),
    expected: Iterable[str] = (),
    min_words: int = 3,
) -> list[str]:
    """Why ``text`` is degenerate (empty when it is not).

    ``echoes``: texts it must not merely repeat (the schema's descriptions, fixed instructions);
    ``prompt``: the request it answered (a long verbatim stretch of it is an echo); ``field_names``:
    the schema's field names (a text that opens with one, or is one, echoes the schema); ``expected``:
    words of the study (template, components, metric, conditions); a text sharing none of its
    content words with them says nothing about the study.
    """
    stripped = " ".join(text.split())
    words = words_of(stripped)
    names = list(field_names)
    reasons = value_problems(stripped, names, echoes)
    if len(words) < min_words:
        return [*reasons, f"too short ({len(words)} word(s))"]
    labels = {n.lower().replace("_", " ") for n in names}
    prefix = _FIELD_PREFIX.match(stripped)
    if prefix and prefix.group(1).strip().lower() in labels | {"hypothesis", "title", "abstract", "answer"}:
        reasons.append(f"opens with a field name ({prefix.group(1).strip()!r})")
    elif prefix and not {w for w in content_words(prefix.group(1)) if w not in _GENERIC_FOLDED}:
        # "The Proposal: A New Approach to Policy Gradient Control": a boilerplate head on the study's words
        reasons.append(f"opens with boilerplate ({prefix.group(1).strip()!r})")
    elif len(words) <= 15 and (head := content_words(stripped)[:1]) and head[0] in _BOILERPLATE_HEADS:
        reasons.append(f"opens with boilerplate ({head[0]!r}), as in 'The Proposal for a New Language Model'")
    if prompt:
        prompt_grams = _ngrams(words_of(prompt), 6)
        own = _ngrams(words, 6)
        if own and len(own & prompt_grams) / len(own) >= 0.5:
            reasons.append("repeats the prompt")
    if len(words) >= 12 and LOOPS not in reasons:
        trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        # a phrase going round ("the maximum allowed gradient descent ... the maximum allowed ..."): one
        # trigram of content words, three times or more, filling a quarter of the text. In 12,790
        # paragraphs of ICLR 2022 papers this flags 29 (0.2%), nearly all figure and table debris.
        topical = Counter(g for g in trigrams if sum(1 for w in g if content_words(w)) >= 2)
        most = topical.most_common(1)[0][1] if topical else 0
        if most >= 3 and 3 * most / len(words) >= 0.25:
            reasons.append(LOOPS)
    if re.search(r"\w-\s*$", stripped):
        # cut off inside a compound by the model's own token limit: an embedded run's title ended "... with
        # Recurrent Neural-"
        reasons.append("cut off mid-word")
    own_content = {w for w in content_words(stripped) if w not in _GENERIC_FOLDED}
    if not own_content:
        reasons.append("no content words: only generic words such as 'hypothesis', 'approach', 'paper'")
    else:
        wanted = {w for term in expected for w in content_words(term)} - _GENERIC_FOLDED
        if wanted and not own_content & wanted:
            reasons.append("no word tied to the study (its template, components, metric or conditions)")
    return reasons
