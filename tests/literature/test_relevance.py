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


def test_words_apart_in_the_text_make_no_phrase() -> None:
    """Modular addition's topic ("algorithmic learning and generalisation") and a TD-learning paper's title
    ("Supervised Learning - A Generalisation Point of View") shared the pair "learning generalization" that
    neither says, beside "generalization": two matches, and the paper was cited."""
    topic = "Modular addition (algorithmic learning and generalisation): SGD with a cosine schedule raises val_accuracy"
    td = relevance(
        topic, "Closing the Gap between TD Learning and Supervised Learning - A Generalisation Point of View"
    )
    assert td.in_title == {"generalization"} and not td.relevant
    assert "learning generalization" not in informative_words(topic) and "cosine schedule" in informative_words(topic)
    grokking = relevance(topic, "Grokking: Generalization Beyond Overfitting on Small Algorithmic Datasets")
    assert grokking.relevant  # two of the study's own words: generalization, algorithmic
