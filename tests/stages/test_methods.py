"""The method space: candidates across projects, relevance of templates to an area, plans with ablations."""

from __future__ import annotations

from experiments.spec import load_template
from fars.stages.methods import candidate_methods, component_conditions, inert_slots, knob_values, rank_templates


def test_candidates_change_the_asked_number_of_slots_and_differ_across_projects() -> None:
    spec = load_template("modadd")
    first = candidate_methods(spec, 2, offset=0, count=3)
    second = candidate_methods(spec, 2, offset=3, count=3)
    assert all(len(c.components) == 2 for c in [*first, *second])
    assert all(spec.component(s).default != o for c in first for s, o in c.components.items())
    assert not {tuple(sorted(c.components.items())) for c in first} & {
        tuple(sorted(c.components.items())) for c in second
    }
    assert len({tuple(c.components) for c in first}) == 3  # neighbours change different slots
    assert any("SGD with momentum" in c.summary for c in candidate_methods(spec, 1, count=20))


def test_a_method_of_two_components_gets_two_ablations_and_an_optional_sweep() -> None:
    spec = load_template("modadd")
    conditions = component_conditions(spec, {"optimizer": "sgd", "schedule": "cosine"}, sensitivity=("lr", [0.03]))
    assert [c.role for c in conditions] == ["baseline", "method", "ablation", "ablation", "sensitivity"]
    assert conditions[2].components == {"schedule": "cosine"} and conditions[2].removed == "optimizer"
    assert len(component_conditions(spec, {"optimizer": "sgd"})) == 2  # one component: no ablation but the baseline
    assert knob_values(spec, "lr", 2) == [0.03, 0.003333]


def test_a_method_that_changes_a_slot_in_name_only_is_never_offered() -> None:
    """digits: without weight decay Adam takes AdamW's steps, so "Adam and a cosine schedule" would be the
    cosine schedule alone, and its ablation without the optimizer would equal the method."""
    spec = load_template("digits")
    assert inert_slots(spec, {"optimizer": "adam", "schedule": "cosine"}) == {
        "optimizer": "optimizer=adam acts as the baseline's adamw unless regularizer is weight_decay"
    }
    assert inert_slots(spec, {"optimizer": "adam", "regularizer": "weight_decay"}) == {}
    offered = [c.components for size in (1, 2, 3) for c in candidate_methods(spec, size, count=200)]
    assert offered and all(not inert_slots(spec, m) for m in offered)
    with_adam = [m for m in offered if m.get("optimizer") == "adam"]
    assert with_adam and all(m.get("regularizer") == "weight_decay" for m in with_adam)


def test_the_area_picks_the_templates() -> None:
    specs = [load_template("modadd"), load_template("chargpt")]
    assert rank_templates("language models of text, next-character prediction", specs)[0].name == "chargpt"
    assert rank_templates("modular arithmetic and grokking of addition", specs)[0].name == "modadd"


def test_harness_titles_name_methods_and_tasks_as_their_templates_spell_them() -> None:
    """The run on chargpt was titled "Relu activation and rmsnorm norm on character-level gpt": option ids and
    a lowered template title. Names keep their case, and the slot is not said twice."""
    from fars.paper.prose import in_sentence, method_phrase

    chargpt, cartpole, digits = load_template("chargpt"), load_template("cartpole"), load_template("digits")
    assert method_phrase(chargpt, {"activation": "relu", "norm": "rmsnorm"}) == "ReLU activation and RMSNorm"
    assert in_sentence(chargpt.title) == "character-level GPT"
    assert in_sentence(cartpole.title) == "policy-gradient control of CartPole"
    assert in_sentence(load_template("abstracts_lm").title) == "character-level language model of ML abstracts"
    assert method_phrase(digits, {"regularizer": "label_smoothing"}) == "label smoothing regularizer"
    assert method_phrase(load_template("llm_judge"), {"format": "json"}) == "JSON format"


def test_harness_text_is_cut_at_words_and_long_method_descriptions_give_way_to_names() -> None:
    """The llm_judge run's statement ended "... of a languag." (cut at 259 characters) and its title inside a
    word: text is cut between words, without a dangling "of", and a statement too long for its field names
    the options instead of describing them."""
    from fars.paper.prose import clip_words
    from fars.stages.ideation import harness_hypothesis

    assert clip_words("policy-gradient control of CartPole", 30) == "policy-gradient control"
    assert clip_words("short", 10) == "short"
    spec = load_template("llm_judge")
    for candidate in candidate_methods(spec, 2, count=20):
        hypothesis = harness_hypothesis(spec, candidate)
        assert hypothesis.statement.endswith("compared with the template's baseline."), hypothesis.statement
        assert "trains" not in hypothesis.rationale  # an inference template trains nothing


def test_the_article_follows_the_metric_name() -> None:
    from fars.paper.prose import article

    assert [article(m) for m in ("accuracy", "eval_return", "val_bpc", "final_loss")] == ["an", "an", "a", "a"]


def test_auto_picks_only_templates_that_run_at_the_runs_scale() -> None:
    from fars.stages.ideation import IdeationSettings, choose_templates
    from tests.conftest import compose

    settings = IdeationSettings.of(compose("experiment=research_cpu", "experiment.max_templates=32"))
    chosen, ranked = choose_templates("training small models", settings)
    names = {s.name for s in chosen}
    assert {"chargpt", "digits"} <= names and "modadd" not in names  # modadd has no research scale
    assert all(s.has_scale("research") for s in chosen) and {c.name for c in ranked} == names
    everything = choose_templates("training small models", IdeationSettings.of(compose("experiment.max_templates=32")))
    assert "modadd" in {s.name for s in everything[0]}


def test_an_acronym_option_no_text_spells_is_written_in_capitals_and_the_harness_title_is_a_sentence() -> None:
    """A relay paper's harness title read "Cnn architecture and shift augmentation on handwritten digit
    classification: a significantly better val accuracy" (a reviewer: "generic and ungrammatical")."""
    from fars.paper.prose import harness_title, method_phrase
    from fars.run.contracts import Condition, Plan
    from tests.paper.test_document import RESULTS

    digits = load_template("digits")
    assert method_phrase(digits, {"architecture": "cnn", "augmentation": "shift"}) == (
        "CNN architecture and shift augmentation"
    )
    plan = Plan(template="digits", design="components", seeds=[0, 1], steps=30, conditions=[
        Condition(name="baseline", role="baseline"),
        Condition(name="method", role="method", components={"architecture": "cnn"}),
    ])  # fmt: skip
    results = RESULTS.model_copy(deep=True)
    results.conditions["method"].verdict = "better"
    assert harness_title(digits, plan, results).startswith("CNN architecture significantly improves val accuracy on")
