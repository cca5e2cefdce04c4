"""Relevance: a work is cited only when it shares the study's own words, not the field's generic ones."""

from __future__ import annotations

from fars.literature.relevance import informative_words, relevance

TOPIC = (
    "ReLU activation and RMSNorm. Swapping GELU for ReLU and LayerNorm for RMSNorm changes val_bpc. Character-level GPT"
)


def test_an_unrelated_top_hit_is_not_relevant() -> None:
    hit = relevance(TOPIC, "Sparse fine-tuning of large language models", "We fine-tune a sparse subset of weights.")
    assert hit.in_title == frozenset() and not hit.relevant


def test_a_work_on_the_topic_is_relevant() -> None:
    hit = relevance(TOPIC, "Root mean square layer normalization (RMSNorm) for character-level GPT", None)
    assert {"rmsnorm", "character-level"} <= hit.in_title and hit.relevant


def test_generic_words_do_not_count_but_their_phrases_do() -> None:
    words = informative_words("Learning rate schedules for deep neural network training generalise")
    assert "learning" not in words and "network" not in words and "learning rate" in words
    assert "generalize" in words  # British spelling folded
    assert not relevance("deep learning model training", "Deep learning models for training", None).relevant
