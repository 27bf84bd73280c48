"""A configuration's seeds grouped by outcome and cause (numbers and order first), then the
wording the report builds from the groups, then the setup paragraph's pointer to `diagnose`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gradprobe.analysis import events as ev
from gradprobe.analysis.questions import diagnosis as dx
from gradprobe.analysis.questions import overview
from gradprobe.analysis.seed_groups import (
    AT_CHANCE,
    DIVERGED,
    LEARNED,
    SeedGroup,
    group_seeds,
    outcome_of,
)


def event(run: str, kind: str, step: int | None, epoch: int = 1, value: float = 1.0) -> ev.Event:
    return ev.Event(run, kind, step, epoch, value, 0.1, f"{kind} in {run}")


def story(run: str, *found: ev.Event) -> ev.Diagnosis:
    return ev.diagnose(list(found), run=run)


def vgg_deep_like() -> dict[str, ev.Diagnosis]:
    """Seeds 0 and 1 vanish at step 0, spike and collapse; seed 2 vanishes, spikes, learns."""
    return {
        "s0": story("s0", event("s0", "vanishing_at_init", 0, value=0.03),
                    event("s0", "instability", 54, 2), event("s0", "collapse", 248, 7)),
        "s1": story("s1", event("s1", "vanishing_at_init", 0, value=0.01),
                    event("s1", "instability", 83, 3), event("s1", "collapse", 175, 5)),
        "s2": story("s2", event("s2", "vanishing_at_init", 0, value=0.06),
                    event("s2", "instability", 38, 1), event("s2", "still_improving", None, 7)),
    }


def grouped(outcomes: dict[str, str] | None = None) -> list[SeedGroup]:
    outcomes = outcomes or {"s0": AT_CHANCE, "s1": AT_CHANCE, "s2": LEARNED}
    return group_seeds(["s0", "s1", "s2"], ["0", "1", "2"], vgg_deep_like(), outcomes)


# ---------------------------------------------------------------------------- groups
def test_outcome_of_puts_divergence_before_chance() -> None:
    assert outcome_of(True, True) == DIVERGED
    assert outcome_of(True, False) == AT_CHANCE
    assert outcome_of(None, False) == LEARNED


def test_failing_seeds_form_the_first_group() -> None:
    groups = grouped()
    assert [(g.outcome, g.cause, g.seeds) for g in groups] == [
        (AT_CHANCE, "vanishing_at_init", ("0", "1")), (LEARNED, "vanishing_at_init", ("2",))]
    assert groups[0].failing and not groups[1].failing


def test_follow_on_lists_each_kind_once_per_seed_root_kinds_first() -> None:
    lead, other = grouped()
    assert [(kind, [(seed, e.step) for seed, e in found]) for kind, found in lead.follow_on()] == [
        ("instability", [("0", 54), ("1", 83)]), ("collapse", [("0", 248), ("1", 175)])]
    assert [kind for kind, _ in other.follow_on()] == ["instability", "still_improving"]


def test_follow_on_is_in_step_order() -> None:
    """A collapse from step 0 is told before a spike at step 71."""
    diagnoses = {"a": story("a", event("a", "vanishing_at_init", 0),
                            event("a", "instability", 71, 2), event("a", "collapse", 0))}
    (group,) = group_seeds(["a"], ["0"], diagnoses, {"a": AT_CHANCE})
    assert [kind for kind, _ in group.follow_on()] == ["collapse", "instability"]


def test_healthy_seeds_come_after_diagnosed_ones_of_the_same_outcome() -> None:
    diagnoses = {"a": story("a"), "b": story("b", event("b", "plateau", 10, 2))}
    groups = group_seeds(["a", "b"], ["0", "1"], diagnoses, {"a": LEARNED, "b": LEARNED})
    assert [g.cause for g in groups] == ["plateau", "healthy"]


def test_a_run_without_a_diagnosis_is_left_out() -> None:
    groups = group_seeds(["s0", "x"], ["0", "9"], vgg_deep_like(), {"s0": AT_CHANCE})
    assert [g.seeds for g in groups] == [("0",)]


def test_deciding_cause_skips_vanishing_that_learning_seeds_share(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dx, "groups_of", lambda analysis, config: grouped())
    assert dx.deciding_cause(None, None) == "instability"  # type: ignore[arg-type]
    every = {"s0": AT_CHANCE, "s1": AT_CHANCE, "s2": AT_CHANCE}
    monkeypatch.setattr(dx, "groups_of", lambda analysis, config: grouped(every))
    assert dx.deciding_cause(None, None) == "vanishing_at_init"  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- wording
def test_when_names_seeds_only_when_some_lack_the_event() -> None:
    a, b = event("s0", "instability", 54), event("s1", "instability", 83)
    assert dx.when([("0", a), ("1", b)], 2) == "at steps 54 and 83"
    assert dx.when([("0", a)], 2) == "at step 54 in seed 0"
    assert dx.when([("0", event("s0", "collapse", 0)), ("1", event("s1", "collapse", 0))], 2,
                   since=True) == "from step 0"
    assert dx.when([("2", event("s2", "still_improving", None, 7))], 1) == "at epoch 7"


def test_seeds_phrase() -> None:
    assert dx.seeds_phrase(("0", "1", "2"), 3) == "in every seed"
    assert dx.seeds_phrase(("2",), 3) == "in seed 2"
    assert dx.seeds_phrase(("0", "1"), 3) == "in 2 of 3 seeds (0, 1)"
    assert dx.seeds_phrase(("0",), 1) == ""


def test_group_clause_wording() -> None:
    lead, other = grouped()
    assert dx.group_clause(lead, 3, name_outcome=True) == (
        "in 2 of 3 seeds (0, 1), at chance: first vanishing gradients at initialisation (at "
        "step 0), then an unstable step (at steps 54 and 83) and a collapse to chance (from "
        "steps 248 and 175)")
    assert dx.group_clause(other, 3, name_outcome=False).startswith(
        "in seed 2: first vanishing gradients at initialisation (at step 0), then")


def test_finding_sentence_has_one_step() -> None:
    lead, _ = grouped()
    assert dx.finding_sentence("vgg_deep", lead, 3) == (
        "What happened in vgg_deep (at chance in 2 of 3 seeds): first vanishing gradients at "
        "initialisation, then an unstable step and a collapse to chance (from step 175 in the "
        "earliest seed).")


def test_vanishing_role_wording() -> None:
    spikes = [event("s2", "instability", 38)]
    assert dx._vanishing_role("instability", ["2"], spikes, " in seed 2") == (
        "vanishing is a symptom in seed 2: an unstable step came first, at step 38")
    assert dx._vanishing_role("plateau", ["2"], [], "") is None


# ---------------------------------------------------------------------------- setup paragraph
def fake_analysis(preset: str, at_chance_runs: int, train: dict[str, Any]) -> Any:
    run = SimpleNamespace(section=lambda name: {"model": {"name": "vgg_deep"},
                                                "train": train}.get(name, {}))
    config = SimpleNamespace(name="vgg_deep", runs=("vgg_deep,seed=0",),
                             at_chance_runs=at_chance_runs)
    return SimpleNamespace(study=SimpleNamespace(spec={"preset": preset}),
                           configurations=[config], run=lambda name: run)


@pytest.mark.parametrize(("preset", "at_chance", "train", "expected"), [
    ("quick", 2, {}, True),
    ("quick", 0, {}, False),  # it learned: nothing to explain
    ("full", 2, {}, False),  # the diagnose study reproduced the quick preset only
    ("quick", 2, {"grad_clip": 1.0}, False),  # already clipped
])
def test_the_diagnose_pointer_needs_the_quick_presets_failing_vgg_deep(
        preset: str, at_chance: int, train: dict[str, Any], expected: bool) -> None:
    analysis = fake_analysis(preset, at_chance, train)
    assert overview.vgg_deep_fails_under_quick(analysis) is expected
    assert (overview.ablation_sentence(analysis) is not None) is expected


def test_the_diagnose_pointer_wording() -> None:
    sentence = overview.ablation_sentence(fake_analysis("quick", 2, {}))
    assert sentence is not None and len(sentence.split()) <= 25
    assert "clipped" in sentence and '"diagnose"' in sentence
