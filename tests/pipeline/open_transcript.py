"""What a capable model answers an open-research run on the simulated template, by the prompt it answers.

Keyed by a phrase of each request (``llm.scripted.routes``), so concurrent calls get their own reply. The model
proposes two ideas of its own (weight averaging with adaptive steps and dropout; a warm-restart schedule that
the template cannot express, so the harness drops its settings), screens them as a skeptical area chair would,
designs a learning-rate sensitivity check, writes the code with each code part behind its switch, asks for one
follow-up (a learning-rate check of the baseline, to rule out that Adam only moved the best rate), and revises
its analysis once it ran. The reviewer's calls are left to the scripted model's samples.
"""

from __future__ import annotations

import json

from tests.code.transcripts import SWITCHED_PARTS

IDEAS = {
    "ideas": [
        {
            "title": "Weight averaging compounds with adaptive steps on the simulated task",
            "statement": "Evaluating an average of the late iterates, trained with Adam and dropout, raises final "
            "val_accuracy over the baseline by about 0.05.",
            "mechanism": "Adam's per-parameter steps reach the flat basin sooner; dropout keeps the late iterates "
            "spread across it, and averaging them lands nearer its centre than any single iterate, so the gains "
            "add rather than overlap.",
            "settings": [{"name": "optimizer", "value": "adam"}, {"name": "regularizer", "value": "dropout"}],
            "code_change": "Evaluate an exponential moving average of the weights in place of the last iterate, "
            "with a bonus for wide models where averaging has more directions to smooth.",
            "prediction": "better",
            "effect": 0.05,
            "parts": [
                {"name": "adaptive_steps", "what": "Adam instead of SGD", "settings": ["optimizer"]},
                {"name": "dropout_noise", "what": "dropout spreads the late iterates", "settings": ["regularizer"]},
                {"name": "weight_averaging", "what": "evaluate the EMA of the weights", "settings": []},
                {"name": "width_bonus", "what": "averaging helps wide models more", "settings": []},
            ],
            "risks": [
                "Adam may only move the best learning rate, so a rate check of the baseline is needed",
                "two seeds cannot separate a 0.01 part from noise",
            ],
            "searches": ["stochastic weight averaging flat minima", "Adam dropout generalization"],
        },
        {
            "title": "Warm restarts let small networks escape sharp minima",
            "statement": "A cosine schedule with two warm restarts raises val_accuracy of the width-64 model by 0.02.",
            "mechanism": "Each restart raises the rate enough to leave a sharp basin found early in training.",
            "settings": [{"name": "schedule", "value": "cosine_restarts"}, {"name": "width", "value": "64"}],
            "code_change": "",
            "prediction": "better",
            "effect": 0.02,
            "parts": [{"name": "restarts", "what": "two warm restarts", "settings": ["schedule"]}],
            "risks": ["the template may not model schedules at all"],
        },
    ]
}
SCREEN_FIRST = {"novelty": 3, "feasibility": 5, "clarity": 5}
SCREEN_SECOND = {"novelty": 2, "feasibility": 2, "clarity": 3}
NOVEL = {"novel": True, "closest": 1, "reason": "the nearest work averages weights with SGD only and predicts no size"}
PLAN = {"knob": "lr", "values": ["0.003"], "rationale": "Adam's gain could be a shift of the best rate; the method at "
        "a lower rate tests whether the averaging benefit survives it."}  # fmt: skip
FIRST_READING = {
    "finding": "The whole idea beats the baseline by close to the predicted size, and both code parts contribute.",
    "verdict": "supported",
    "analysis": "Switching off weight averaging removes most of the gain while the width bonus removes a smaller "
    "share, as the mechanism predicts. Adam with dropout alone already improves on the baseline, so part of the "
    "effect may be a shift of the best learning rate rather than faster arrival in a flat basin; a learning-rate "
    "check of the baseline decides this.",
    "followups": [
        {
            "name": "baseline-lr-check",
            "settings": [{"name": "lr", "value": "0.003"}],
            "why": "if the baseline at a lower rate matches the method, Adam only moved the best rate",
        }
    ],
}
REVISED = {
    "finding": "The gain survives the learning-rate check: the baseline at the lower rate does not reach the method.",
    "verdict": "supported",
    "analysis": "The follow-up rules out the simplest confound, a shifted best rate. The ablations attribute most of "
    "the gain to weight averaging; the width bonus is within the seed-to-seed spread at two seeds, so its share "
    "stays open. What remains untested is whether the benefit holds for longer training.",
}
DRAFT = {
    "title": "Weight averaging compounds with adaptive steps in a simulated training task",
    "abstract": "We test whether evaluating an average of late iterates adds to the benefit of adaptive steps and "
    "dropout. The combined method improves validation accuracy over the baseline, the ablations attribute most of "
    "the gain to averaging, and a learning-rate check of the baseline rules out a shifted best rate.",
    "introduction": "Averaging the weights of late iterates is a cheap way to land nearer the centre of a flat "
    "basin. We ask whether it compounds with adaptive steps and dropout, which change how the late iterates are "
    "spread, and we ablate each named part of the method.",
    # keys as the harness makes them from the bundled corpus's records (first author or title word, year); the
    # fourth listed work (autonomous reinforcement learning) bears on nothing here and is left uncited
    "related_work": "Lookaround [@lookaround2023] averages the weights reached by several steps taken around the "
    "current iterate during training, whereas we average late iterates only for evaluation and ask whether that "
    "adds to adaptive steps and dropout. Decoupled weight decay for Adam [@fixing2018] and dropout rates adapted "
    "to a complexity bound [@adaptive2018] change the two ingredients our method combines, but neither looks at "
    "how they interact with averaging. The fourth listed work studies agents whose performance degrades without "
    "resets, a setting unlike ours that proposes no method for supervised training.",
    "discussion": "The corrected tests support the primary prediction. Weight averaging carries most of the effect; "
    "the width bonus is not separable from seed noise at this number of seeds, which a larger study should settle. "
    "Training accuracy reached 0.99 in every condition, so none of them underfit.",
}
# the checks send back the abstract's second sentence (it credits the ablations with more than their tests show)
# and the discussion's last (its 0.99 is in no record): the first is mended; the second keeps its number, as a
# model that did not look again at the records would, and is left to the harness
REWRITES = {
    "rewrites": [
        {
            "index": 1,
            "sentence": "At this number of seeds the combined method's difference from the baseline is "
            "inconclusive, and a learning-rate check of the baseline rules out a shifted best rate.",
        },
        {"index": 2, "sentence": "Training accuracy stayed near 0.99 in every condition, so none of them underfit."},
    ]
}

OPEN = {
    "different ideas": [json.dumps(IDEAS)],
    "Score each axis from 1 to 5 by these anchors": [json.dumps(SCREEN_FIRST), json.dumps(SCREEN_SECOND)],
    "Is the hypothesis novel": [json.dumps(NOVEL)],
    "Pick one setting for a sensitivity check": [json.dumps(PLAN)],
    "version n0)": [SWITCHED_PARTS],
    "Write what was found relative to the prediction": [json.dumps(FIRST_READING), json.dumps(REVISED)],
    "Write the title, abstract, introduction, related work and discussion": [json.dumps(DRAFT)],
    "failed the paper's checks": [json.dumps(REWRITES)],
}
