"""Write ``corpus.txt``: a small English-like text made by a hand-written grammar (public domain).

The char-level GPT template trains on it. It is generated, not downloaded, so it can be rebuilt
byte for byte: ``python -m experiments.chargpt.make_corpus`` (seeded; about 200 KB). Sentences have
agreement, clauses, dialogue and recurring characters, so a small model has structure to learn at
several scales: spelling, word order, and which names go with which places.
"""

from __future__ import annotations

import random
from pathlib import Path

NAMES = ["Ada", "Bram", "Celia", "Dunstan", "Edith", "Fenwick", "Greta", "Hollis", "Ivo", "Juniper"]
PLACES = {
    "Ada": "the lighthouse",
    "Bram": "the mill",
    "Celia": "the orchard",
    "Dunstan": "the harbour",
    "Edith": "the library",
    "Fenwick": "the forge",
    "Greta": "the bakery",
    "Hollis": "the station",
    "Ivo": "the quarry",
    "Juniper": "the garden",
}
ADJ = ["quiet", "old", "bright", "narrow", "cold", "green", "small", "crooked", "warm", "distant", "patient", "tired"]
NOUNS = ["lamp", "river", "road", "window", "letter", "bell", "boat", "field", "clock", "bridge", "kettle", "map"]
VERBS = [("mended", "mends"), ("opened", "opens"), ("carried", "carries"), ("found", "finds"), ("painted", "paints")]
TIMES = ["in the morning", "at dusk", "before the rain", "after supper", "on market day", "when the tide turned"]
WEATHER = [
    "The wind came off the sea.",
    "Rain fell all afternoon.",
    "The sky was clear and pale.",
    "Fog hid the hills.",
]
SAYINGS = [
    "we will need more rope",
    "the bridge will hold",
    "the letters came late again",
    "nobody rings the bell on Sundays",
    "the river is higher than last year",
    "bread tastes better when it is shared",
]


def noun_phrase(rng: random.Random) -> str:
    """'the old lamp', 'a crooked bridge'."""
    article = rng.choice(["the", "the", "a"])
    adjective = rng.choice(ADJ)
    if article == "a" and adjective[0] in "aeiou":
        article = "an"
    return f"{article} {adjective} {rng.choice(NOUNS)}"


def sentence(rng: random.Random) -> str:
    """One sentence from a handful of patterns."""
    who = rng.choice(NAMES)
    past, present = rng.choice(VERBS)
    kind = rng.randrange(6)
    if kind == 0:
        return f"{who} {past} {noun_phrase(rng)} {rng.choice(TIMES)}."
    if kind == 1:
        return f"Every day {who} walks to {PLACES[who]} and {present} {noun_phrase(rng)}."
    if kind == 2:
        other = rng.choice([n for n in NAMES if n != who])
        saying = rng.choice(SAYINGS)
        return f'"{saying[0].upper()}{saying[1:]}," said {who} to {other}.'
    if kind == 3:
        return rng.choice(WEATHER)
    if kind == 4:
        count = rng.randint(2, 9)
        return f"At {PLACES[who]} there were {count} {rng.choice(NOUNS)}s, and {who} counted them twice."
    return f"When {who} {past} {noun_phrase(rng)}, {PLACES[who]} was {rng.choice(ADJ)}."


def corpus(seed: int = 0, size: int = 200_000) -> str:
    """Paragraphs of 3-7 sentences until the text reaches ``size`` characters."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < size:
        text = " ".join(sentence(rng) for _ in range(rng.randint(3, 7)))
        paragraphs.append(text)
        total += len(text) + 2
    return "\n\n".join(paragraphs) + "\n"


if __name__ == "__main__":
    out = Path(__file__).with_name("corpus.txt")
    out.write_text(corpus(), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
