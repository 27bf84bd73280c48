"""The questions answered on constructed studies whose truth is known: numbers and verdicts
first (from the study analysis), then the wording and the length limits of the report."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from fakes import (
    healthy_then_vanishing,
    write_configuration,
    write_default_like_study,
    write_run,
    write_study,
)
from gradprobe import record
from gradprobe.analysis import load_study, summarize_frame, write_report
from gradprobe.analysis.chance import chance_for, run_at_chance
from gradprobe.analysis.questions import key_findings, references, synthesis, vanishing
from gradprobe.analysis.study import build

EPOCHS = 3


@pytest.fixture(scope="module")
def truths(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """late: healthy at step 0 and epoch 1, vanishing (1/16) at the last epoch, learns;
    stuck: even flow, validation accuracy 1/3 on 3 classes (at chance);
    flat: learns by accuracy but its training loss stays at ln 3 (at chance by loss)."""
    root = tmp_path_factory.mktemp("truths")
    configs = {}
    configs |= write_configuration(root, "late", epochs=EPOCHS,
                                   norm_of=healthy_then_vanishing(4, EPOCHS),
                                   val_acc=[0.6, 0.8, 0.9])
    configs |= write_configuration(root, "stuck", epochs=EPOCHS, model={"width": 0.5},
                                   norm_of=lambda d, k, e, s, m: 1.0, val_acc=[0.33, 0.31, 0.35])
    configs |= write_configuration(root, "flat", epochs=EPOCHS, model={"width": 1.0},
                                   norm_of=lambda d, k, e, s, m: 1.0, val_acc=[0.6, 0.7, 0.8],
                                   train_loss=[math.log(3)] * EPOCHS)
    write_study(root, list(configs), comparison=list(configs), configurations=configs)
    write_report(root)
    return root


def test_healthy_first_and_vanishing_last_is_called_both(truths: Path) -> None:
    late = build(load_study(truths)).configurations[0]
    assert late.name == "late"
    assert late.verdicts == {"step0": "healthy", "first": "healthy", "last": "vanishing"}
    assert late.ratio("weight_grad_norm", "last").centre == pytest.approx(1 / 16)
    assert late.ratio("output_grad_norm", "step0").centre == pytest.approx(1.0)
    assert late in vanishing.categories([late])["later"]


def test_chance_is_a_binomial_interval_or_a_flat_loss(truths: Path) -> None:
    late, stuck, flat = build(load_study(truths)).configurations
    assert (late.at_chance, stuck.at_chance, flat.at_chance) == (False, True, True)
    assert (stuck.at_chance_runs, stuck.judged_runs) == (3, 3)
    # 45 validation images, p = 1/3: the 95% binomial interval by direct summation
    chance = chance_for(3, 45)
    pmf = [math.comb(45, k) * (1 / 3) ** k * (2 / 3) ** (45 - k) for k in range(46)]
    cdf = np.cumsum(pmf)
    assert chance.low * 45 == int(np.searchsorted(cdf, 0.025))
    assert chance.high * 45 == int(np.searchsorted(cdf, 0.975))
    run = load_study(truths).runs["late,seed=0"]
    assert run_at_chance(run, chance) is False and run_at_chance(run, None) is None


def test_wording_says_both_epochs_and_chance(truths: Path) -> None:
    text = (truths / "report.md").read_text(encoding="utf-8")
    answer = text.split("### (a)")[1].split("###")[0]
    assert "not at initialisation, but by the last epoch in late" in answer
    assert "| late | 90.0% | 3 |" in text  # above chance: not called so
    assert "| stuck | 35.0%, at chance | 3 |" in text
    assert "| flat | 80.0%, at chance | 3 |" in text
    assert "healthy at step 0 and epoch 1, vanishing by epoch 3" in text


def test_analysis_json_holds_the_verdicts(truths: Path) -> None:
    data = json.loads((truths / record.ANALYSIS_FILE).read_text(encoding="utf-8"))
    assert data["schema"] == 1
    assert {e["kind"] for e in data["events"]} == {"still_improving"}  # late, flat: rising
    by_name = {c["name"]: c for c in data["configurations"]}
    assert by_name["late"]["verdicts"] == {"step0": "healthy", "first": "healthy",
                                           "last": "vanishing"}
    assert by_name["stuck"]["at_chance"] is True and by_name["late"]["at_chance"] is False
    assert by_name["late"]["ratios"]["weight_grad_norm"]["last"]["centre"] == pytest.approx(
        1 / 16)
    assert data["chance"]["interval"] == pytest.approx([chance_for(3, 45).low,
                                                        chance_for(3, 45).high])


def test_a_run_without_a_finite_value_is_drawn_as_no_data(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "good")
    write_run(tmp_path / "runs", "void", norm_of=lambda d, k, e, s, m: math.nan)
    write_study(tmp_path, ["good", "void"])
    written = write_report(tmp_path)
    assert "| void | 70.0% | 1 | n/a / n/a / n/a |" in written["md"].read_text(encoding="utf-8")
    single = write_report(tmp_path / "runs" / "void")  # `gradprobe report RUN_DIR` too
    assert single["html"].stat().st_size > 0


def test_one_fitted_layer_gives_no_verdict_and_the_reason() -> None:
    rows = [(step, 1, name, depth, "linear", "weight_grad_norm", 0.5)
            for step in range(3) for name, depth in (("rnn", 0), ("head", 1))
            if name == "head"]
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(record.GRADIENT_COLUMNS))
    summary = summarize_frame(frame)
    assert summary.verdict == "no verdict" and summary.first.ratio is None
    assert "1 fitted linear layer" in summary.reason


@pytest.fixture(scope="module")
def default_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_default_like_study(tmp_path_factory.mktemp("default_like"))
    write_report(root)
    return root


def _prose(markdown: str) -> str:
    """Text outside tables, figures, captions and code blocks."""
    markdown = re.sub(r"```.*?```", "", markdown, flags=re.S)
    lines = [line for line in markdown.splitlines()
             if line.strip() and not line.startswith(("|", "![", "#"))
             and not (line.startswith("*") and not line.startswith("**"))]  # captions
    return "\n".join(lines)


def _sentences(text: str) -> list[str]:
    """Sentences of each line (a bullet is its own line), split after . ! ? before a capital."""
    found = []
    for line in text.splitlines():
        line = line.removeprefix("- ").strip("* ")
        found += [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", line) if s]
    return found


def _main_body(markdown: str) -> str:
    return markdown.split("## Key findings")[1].split("### (f) References")[0]


def test_the_default_like_study_keeps_the_length_limits(default_like: Path) -> None:
    markdown = (default_like / "report.md").read_text(encoding="utf-8")
    body = _prose(_main_body(markdown))
    assert len(body.split()) <= 3000
    long = [s for s in _sentences(body) if len(s.split()) > 60]
    assert not long, long
    setup = markdown.split("## Setup and results")[1].split("\n\n")[1]
    assert setup.startswith("Setup:") and len(setup.split()) <= 120
    findings = markdown.split("## Key findings")[1].split("## Step 3")[0]
    assert 1 <= findings.count("\n- ") <= key_findings.MAX_KEY_FINDINGS
    assert "(n=" not in markdown


def test_no_sentence_repeats_between_sections(default_like: Path) -> None:
    markdown = (default_like / "report.md").read_text(encoding="utf-8")
    sections = re.split(r"\n#{2,3} ", _main_body(markdown))
    seen: dict[str, int] = {}
    for index, section in enumerate(sections):
        for sentence in set(_sentences(_prose(section))):
            if len(sentence.split()) >= 8:
                assert seen.setdefault(sentence, index) == index, sentence


def test_the_default_like_study_is_answered(default_like: Path) -> None:
    analysis = build(load_study(default_like))
    deep = next(c for c in analysis.configurations if c.name == "vgg_deep")
    assert deep.at_chance and deep.verdicts["last"] == "vanishing"
    assert deep.verdicts["first"] == "healthy"
    bn = next(c for c in analysis.configurations if c.name == "norm=batch")
    assert bn.verdicts["step0"] == "exploding"  # 2 ** 7 at step 0
    assert len(analysis.twins) == 3  # plain/resnet at depths 8, 20 and 32, from the registry
    # cures only where the accuracy gain is beyond seed-to-seed variation: depth 8 ties
    cures = synthesis.cures(analysis)
    assert [c.split(":")[0] for c in cures][:2] == ["Batch norm", "Residual connections"]
    assert "depth=32,residual=true" in cures[1] and "depth=8,residual=true" not in cures[1]
    assert any(c.startswith("Vanishing gradients at initialisation: init=default")
               for c in synthesis.causes(analysis))
    # the event detector dates the cause: vanishing at step 0 in the default-init variants
    default = next(c for c in analysis.configurations if c.name == "init=default,activation=relu")
    assert analysis.diagnoses[default.runs[0]].cause == "vanishing_at_init"
    data = json.loads((default_like / record.ANALYSIS_FILE).read_text(encoding="utf-8"))
    entry = next(c for c in data["configurations"] if c["name"] == default.name)
    assert entry["diagnoses"][0]["cause"] == "vanishing_at_init"
    assert {e["kind"] for e in entry["events"]} >= {"vanishing_at_init"}
    assert entry["events"][0]["step"] == 0
    markdown = (default_like / "report.md").read_text(encoding="utf-8")
    assert "In init=default,activation=relu vanishing is the cause" in markdown
    assert "**It makes the gradient explode at initialisation, not vanish" in markdown
    assert "| vgg\\_deep | 10.0%, at chance | 3 |" in markdown


def test_every_cited_work_is_in_the_references(default_like: Path) -> None:
    markdown = (default_like / "report.md").read_text(encoding="utf-8")
    text, listed = markdown.split("### (f) References")
    listed = listed.split("## Appendix")[0]
    for key in references.cited([text]):
        assert references.WORKS[key] in listed.replace("\\", "")
    cited = set(re.findall(r"\b([A-Z][a-z]+(?: et al\.| & [A-Z][a-z]+)?) \(?(\d{4})", text))
    assert cited and all(f"{author} {year}" in " ".join(references.WORKS) or any(
        key.startswith(f"{author} {year}") for key in references.WORKS)
        for author, year in cited), cited
    assert "Alpaydin" not in listed and "PyTorch" in listed  # synthetic data: no digits source


def test_an_unstable_step_is_dated_and_drawn(tmp_path: Path) -> None:
    """A run at chance whose global gradient norm jumps 100x at step 30: the diagnosis names
    the instability at that step, and the report draws its timeline."""
    write_run(tmp_path / "runs", "spiky", epochs=4, steps_per_epoch=12,
              val_acc=[0.33, 0.3, 0.35, 0.33], norm_of=healthy_then_vanishing(4, 4),
              step_norm=lambda step: 100.0 if step == 30 else 1.0 + 0.01 * (step % 3))
    write_study(tmp_path, ["spiky"])
    written = write_report(tmp_path)
    analysis = build(load_study(tmp_path))
    diagnosis = analysis.diagnoses["spiky"]
    assert diagnosis.cause == "instability" and diagnosis.cause_event.step == 30
    assert "figures/spiky-timeline.png" in written
    text = written["md"].read_text(encoding="utf-8")
    assert "First an unstable step (at step 30)" in text
    assert "Drawn below: at step 30, the global gradient norm reached 100" in text
    assert "In spiky vanishing is a symptom: an unstable step came first, at step 30." in text


def test_the_setup_counts_classes_from_the_class_names_when_no_count_is_recorded(
        truths: Path) -> None:
    """torchvision sets record class names only (no num_classes): the setup still counts 3."""
    from gradprobe.analysis.questions.overview import setup_sentences

    analysis = build(load_study(truths))
    assert all("num_classes" not in run.data_info for run in analysis.study.runs.values())
    assert {run.num_classes for run in analysis.study.runs.values()} == {3}
    assert "3 classes at 32×32 px" in setup_sentences(analysis)[0]


def test_step_3_draws_all_layers_and_a_subset_of_each_compared_model(truths: Path) -> None:
    """The assignment asks for both: every layer, and a subset (first, middle, last)."""
    figures = {path.name for path in (truths / record.FIGURES_DIR).glob("*.png")}
    for name in ("late", "stuck", "flat"):
        assert any(f.startswith(name) and f.endswith("-all-layers.png") for f in figures)
        assert any(f.startswith(name) and f.endswith("-subset.png") for f in figures)
    report = (truths / record.REPORT_MD).read_text("utf-8")
    assert "the first, middle and last conv layers" in report


def _experiment_study(root: Path, none_acc: Sequence[float], batch_acc: Sequence[float]) -> Path:
    """A norm experiment whose two variants' final accuracies per seed are given; without
    batch norm the gradient vanishes by the last epoch, so the verdicts differ."""
    configs: dict[str, str] = {}
    flows = {"bn.norm=none": healthy_then_vanishing(4, EPOCHS),
             "bn.norm=batch": lambda d, k, e, s, m: 1.0}
    for label, finals in (("bn.norm=none", none_acc), ("bn.norm=batch", batch_acc)):
        for seed, final in enumerate(finals):
            configs |= write_configuration(root, label, seeds=(seed,), epochs=EPOCHS,
                                           norm_of=flows[label], val_acc=[final] * EPOCHS)
    experiment = {"name": "bn", "title": "Batch norm", "question": "Does batch norm help?",
                  "axes": {"norm": ["none", "batch"]}, "runs": list(configs)}
    write_study(root, list(configs), experiments=[experiment], configurations=configs)
    return root


@pytest.mark.parametrize(("none_acc", "lead"), [
    ((0.30, 0.90, 0.80), "Partly"),  # one seed at chance, but the means overlap over seeds
    ((0.30, 0.31, 0.32), "Yes"),  # at chance in every seed: far below the other variant
])
def test_an_experiment_answers_yes_only_beyond_seed_variation(
        tmp_path: Path, none_acc: tuple[float, ...], lead: str) -> None:
    from gradprobe.analysis.questions.experiments import answer_sentence

    analysis = build(load_study(_experiment_study(tmp_path, none_acc, (0.90, 0.86, 0.88))))
    (experiment,) = analysis.experiments
    assert answer_sentence(experiment).startswith(f"{lead}:")
