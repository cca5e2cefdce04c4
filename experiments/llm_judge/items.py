"""Judge items with known answers, generated from a seed: a question, its correct and its wrong candidate.

Three families, each harder as ``difficulty`` rises from 1 to 5:

* ``arithmetic``: "What is 37 + 48?" against a near miss (single-digit sums up to three-digit by
  two-digit products whose wrong result differs in one digit);
* ``agreement``: which of two sentences is grammatical, the wrong one breaking subject-verb agreement
  (no distracting noun, then prepositional phrases and relative clauses whose nouns differ in number
  from the subject, the attraction errors people make too);
* ``comparison``: which of two numbers is larger (far-apart integers up to decimals four places apart,
  and at difficulty 4 the trap of 9.11 against 9.9).

Item ``i`` of a seed is the same whatever the run's length, so a short run's items are a prefix of a
longer one's. Standard library only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FAMILIES = ("arithmetic", "agreement", "comparison")


@dataclass(frozen=True)
class Item:
    """One judging task: the question and its two candidates, the correct one first (slots are assigned later)."""

    family: str
    question: str
    correct: str
    wrong: str


def _near_digit(value: int, rng: random.Random) -> int:
    """``value`` with one non-leading digit moved up or down by one."""
    digits = list(str(value))
    place = rng.randrange(1, len(digits)) if len(digits) > 1 else 0
    d = int(digits[place])
    digits[place] = str(d + 1 if d < 9 and (d == 0 or rng.random() < 0.5) else d - 1)
    return int("".join(digits))


def arithmetic(difficulty: int, rng: random.Random) -> Item:
    """A sum or product and a near miss; larger operands and closer misses as difficulty rises."""
    if difficulty <= 1:
        a, b, op = rng.randint(1, 9), rng.randint(1, 9), "+"
    elif difficulty == 2:
        a, b, op = rng.randint(10, 99), rng.randint(10, 99), "+"
    elif difficulty == 3:
        a, b, op = rng.randint(10, 99), rng.randint(2, 9), "*"
    elif difficulty == 4:
        a, b, op = rng.randint(10, 99), rng.randint(10, 99), "*"
    else:
        a, b, op = rng.randint(100, 999), rng.randint(10, 99), "*"
    result = a + b if op == "+" else a * b
    if difficulty <= 3:
        offsets = [-2, -1, 1, 2] if difficulty == 1 else [-10, -2, -1, 1, 2, 10]
        wrong = result + rng.choice([o for o in offsets if result + o > 0])
    else:
        wrong = _near_digit(result, rng)
    shown = "+" if op == "+" else "x"
    return Item("arithmetic", f"What is {a} {shown} {b}?", str(result), str(wrong))


# (singular, plural) noun phrases and verb forms; every combination reads as a plausible sentence
SUBJECTS = [
    ("the key", "the keys"),
    ("the author", "the authors"),
    ("the teacher", "the teachers"),
    ("the report", "the reports"),
    ("the child", "the children"),
    ("the bridge", "the bridges"),
    ("the manager", "the managers"),
    ("the painting", "the paintings"),
]
PREDICATES = [
    ("is", "are", "here"),
    ("was", "were", "new"),
    ("has", "have", "arrived"),
    ("looks", "look", "fine"),
    ("needs", "need", "attention"),
    ("stays", "stay", "the same"),
    ("seems", "seem", "important"),
]
PLACES = [
    ("near the window", "near the windows"),
    ("of the cabinet", "of the cabinets"),
    ("behind the house", "behind the houses"),
    ("beside the old tree", "beside the old trees"),
    ("with the red door", "with the red doors"),
    ("on the shelf", "on the shelves"),
]
CLAUSE_SUBJECTS = [
    ("the critic", "the critics"),
    ("the guard", "the guards"),
    ("the neighbour", "the neighbours"),
    ("the student", "the students"),
]
CLAUSE_VERBS = [("praises", "praise"), ("follows", "follow"), ("admires", "admire"), ("visits", "visit")]


def agreement(difficulty: int, rng: random.Random) -> Item:
    """A sentence whose main verb agrees with its subject, and the same sentence with the verb's other number.

    Difficulty adds nouns of the other number between subject and verb: none (1), a prepositional
    phrase (2), a relative clause (3), two phrases (4), a relative clause holding a phrase (5).
    """
    plural = rng.random() < 0.5
    other = not plural
    subject = rng.choice(SUBJECTS)[plural]
    right, wrong_form, rest = rng.choice(PREDICATES)
    if plural:
        right, wrong_form = wrong_form, right
    places = rng.sample(PLACES, 2)
    clause_subject = rng.choice(CLAUSE_SUBJECTS)[other]
    clause_verb = rng.choice(CLAUSE_VERBS)[other]
    if difficulty <= 1:
        middle = ""
    elif difficulty == 2:
        middle = f" {places[0][other]}"
    elif difficulty == 3:
        middle = f" that {clause_subject} {clause_verb}"
    elif difficulty == 4:
        middle = f" {places[0][other]} {places[1][other]}"
    else:
        middle = f" that {clause_subject} {places[0][other]} {clause_verb}"

    def sentence(verb: str) -> str:
        text = f"{subject}{middle} {verb} {rest}."
        return text[0].upper() + text[1:]

    return Item("agreement", "Which sentence is grammatically correct?", sentence(right), sentence(wrong_form))


def comparison(difficulty: int, rng: random.Random) -> Item:
    """Two numbers, the larger one correct; closer and more misleading as difficulty rises."""
    if difficulty <= 1:
        a = rng.randint(1, 70)
        b = a + rng.randint(20, 30)
        small, large = str(a), str(b)
    elif difficulty == 2:
        a = rng.randint(100, 989)
        small, large = str(a), str(a + rng.randint(1, 9))
    elif difficulty == 3:
        n, x, y = rng.randint(1, 20), *sorted(rng.sample(range(10, 100), 2))
        small, large = f"{n}.{x}", f"{n}.{y}"
    elif difficulty == 4:  # the longer decimal looks larger and is smaller: 9.11 against 9.9
        n, k = rng.randint(1, 20), rng.randint(2, 9)
        m = rng.randrange(max(10, k + 1), 10 * k)
        small, large = f"{n}.{m:02d}", f"{n}.{k}"
    else:
        n = rng.randint(1, 9)
        digits = rng.sample("123456789", 4)
        one, two = "".join(digits), "".join([*digits[:2], digits[3], digits[2]])
        small, large = sorted([f"{n}.{one}", f"{n}.{two}"], key=float)
    return Item("comparison", "Which number is larger?", large, small)


MAKERS = {"arithmetic": arithmetic, "agreement": agreement, "comparison": comparison}


def family_of(task: str, index: int) -> str:
    """The family of item ``index``: the task's own, or the three in turn for ``mixed``."""
    if task == "mixed":
        return FAMILIES[index % len(FAMILIES)]
    if task not in MAKERS:
        raise ValueError(f"unknown task {task!r}; use one of {['mixed', *FAMILIES]}")
    return task


def make_item(task: str, difficulty: int, seed: int, index: int, stream: str = "eval") -> Item:
    """Item ``index`` of ``seed``; ``stream`` keeps worked examples apart from evaluated items."""
    family = family_of(task, index)
    rng = random.Random(f"{stream}:{seed}:{family}:{difficulty}:{index}")
    item = MAKERS[family](max(1, min(5, int(difficulty))), rng)
    if item.correct == item.wrong:  # cannot happen by construction; a broken item would score nonsense
        raise AssertionError(f"item {index} of seed {seed} has two equal candidates: {item}")
    return item
