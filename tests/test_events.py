"""Event detection and diagnosis: each detector on constructed frames (numbers and verdicts),
then its wording, then real tiny training runs with a known cause of failure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradprobe.analysis import events as ev
from gradprobe.analysis.events import Event, detect_events, diagnose
from gradprobe.record import GRADIENT_COLUMNS, METRIC_COLUMNS, STEP_COLUMNS

C = 10  # classes
B = 32  # batch size
UNIFORM = math.sqrt((C - 1) / (C * B))  # the logits' gradient norm at a uniform softmax
PER_EPOCH = 20


def steps_frame(norms: list[float], losses: list[float] | None = None) -> pd.DataFrame:
    count = len(norms)
    losses = losses if losses is not None else [1.0] * count
    frame = pd.DataFrame({"step": range(count), "epoch": [1 + s // PER_EPOCH for s in range(count)],
                          "train_loss": losses, "lr": [0.01] * count,
                          "global_grad_norm": norms})
    return frame[list(STEP_COLUMNS)]


def epochs_frame(train_loss: list[float], val_acc: list[float] | None = None,
                 train_acc: list[float] | None = None) -> pd.DataFrame:
    count = len(train_loss)
    return pd.DataFrame({
        "epoch": range(1, count + 1), "train_loss": train_loss,
        "train_acc": train_acc if train_acc is not None else [0.5] * count,
        "val_loss": train_loss, "val_acc": val_acc if val_acc is not None else [0.5] * count,
        "lr": [0.01] * count, "seconds": [1.0] * count,
    })[list(METRIC_COLUMNS)]


def gradients_frame(values: dict[tuple[str, str, int, str], list[float]]) -> pd.DataFrame:
    """{(layer, kind, depth, metric): one value per step} -> the tidy frame."""
    rows = [(step, 1 + step // PER_EPOCH, layer, depth, kind, metric, value)
            for (layer, kind, depth, metric), series in values.items()
            for step, value in enumerate(series)]
    return pd.DataFrame(rows, columns=list(GRADIENT_COLUMNS))


def dead_gradients(shares: list[list[float]]) -> pd.DataFrame:
    """dead_fraction of len(shares) conv layers, shares[layer][step]."""
    return gradients_frame({(f"features.{i}", "conv", i, "dead_fraction"): series
                            for i, series in enumerate(shares)})


NO_STEPS = steps_frame([])
NO_GRADIENTS = gradients_frame({})


# ---------------------------------------------------------------------------- instability
def test_a_spike_above_ten_running_medians_is_instability() -> None:
    rng = np.random.default_rng(0)
    norms = list(0.3 * np.exp(rng.normal(0, 0.2, 60)))
    norms[41] = 14.5
    found = ev.detect_instability(steps_frame(norms), num_classes=C, run="r", warmup_end=41)
    assert [(e.kind, e.step, e.epoch) for e in found] == [("instability", 41, 3)]
    assert found[0].value == 14.5
    assert found[0].threshold == pytest.approx(10 * np.median(norms[16:41]))


def test_noise_below_the_factor_and_too_short_a_history_are_not_instability() -> None:
    norms = [0.3, 0.3, 3.0] + [0.3 * (1 + 0.5 * (s % 3)) for s in range(50)]
    norms[30] = 0.3 * 9.5  # 9.5x: below the factor
    assert ev.detect_instability(steps_frame(norms), num_classes=C) == []  # step 2: no history


def test_a_loss_spike_above_twice_chance_is_instability_a_noisy_small_loss_is_not() -> None:
    losses = [0.05 * (1 + (s % 4)) for s in range(40)]  # 4x swings of a small loss: noise
    losses[30] = 9.0  # 3x the median and above 2 ln(10) = 4.6
    losses[35] = 2.5  # 20x the median but below twice chance (a batch-norm net's last batch)
    found = ev.detect_instability(steps_frame([1.0] * 40, losses), num_classes=C)
    assert [(e.step, e.value) for e in found] == [(30, 9.0)]


def test_a_gradient_spike_of_a_hard_batch_is_not_instability() -> None:
    """Converged nets (measured on digits) see 10-13x gradient spikes on batches whose loss
    rose 5-30x: the batch was hard, the step was not unstable."""
    norms, losses = [0.2] * 40, [0.02] * 40
    norms[30], losses[30] = 2.4, 0.02 * 4.1  # 12x the norm, 4.1x the loss (>= 12 / 3)
    norms[35], losses[35] = 2.4, 0.02 * 3.9  # 3.9x: less than a third of 12x
    found = ev.detect_instability(steps_frame(norms, losses), num_classes=C)
    assert [e.step for e in found] == [35]


def test_a_spike_that_clipping_cut_down_is_not_instability() -> None:
    norms = [0.8] * 40
    norms[30] = 14.0
    steps = steps_frame(norms)
    assert [e.step for e in ev.detect_instability(steps, num_classes=C)] == [30]
    assert ev.detect_instability(steps, num_classes=C, grad_clip=1.0) == []
    clipped_low = [0.05] * 40  # a clip far above the typical norm still lets a spike through
    clipped_low[30] = 14.0
    assert [e.step for e in ev.detect_instability(steps_frame(clipped_low), num_classes=C,
                                                  grad_clip=1.0)] == [30]


def test_a_zero_median_is_never_exceeded_tenfold() -> None:
    norms = [0.0] * 30 + [1e-9]
    assert ev.detect_instability(steps_frame(norms), num_classes=C) == []


# ---------------------------------------------------------------------------- dead units
def test_dead_units_start_where_most_layers_stay_dead() -> None:
    steps = 60
    dying = [[0.5] * 45 + [0.95] * 15 for _ in range(7)]  # 7 of 10 layers dead from step 45
    alive = [[0.5] * steps for _ in range(3)]
    blip = [[0.5] * 10 + [0.99] * 2 + [0.5] * 33 + [0.95] * 15 for _ in range(1)]
    found = ev.detect_dead_units(dead_gradients(dying[:6] + blip + alive), run="r")
    assert [(e.kind, e.step, e.epoch, e.value) for e in found] == [("dead_units", 45, 3, 7.0)]


def test_dead_units_from_the_first_step() -> None:
    found = ev.detect_dead_units(dead_gradients([[1.0] * 30] * 4))
    assert [(e.step, e.value) for e in found] == [(0, 4.0)]


@pytest.mark.parametrize("shares", [
    [[0.95] * 30] * 5 + [[0.5] * 30] * 5,  # exactly half the layers: not most
    [[0.95] * 20 + [0.5] * 10] * 10,  # dead, then recovered by the end
    [[0.89] * 30] * 10,  # just below the share
])
def test_half_the_layers_recovery_or_a_lower_share_is_not_dead_units(
        shares: list[list[float]]) -> None:
    assert ev.detect_dead_units(dead_gradients(shares)) == []


# ---------------------------------------------------------------------------- collapse
def logits(values: list[float]) -> dict[tuple[str, str, int, str], list[float]]:
    return {("classifier", "linear", 5, "output_grad_norm"): values}


def test_collapse_needs_the_loss_at_chance_and_the_uniform_logits_gradient() -> None:
    chance = math.log(C)
    epochs = epochs_frame([2.0, chance * 1.01, chance * 0.995, chance])
    gradients = gradients_frame(logits([0.3] * 20 + [UNIFORM * 1.02] * 60))
    found = ev.detect_collapse(epochs, gradients, NO_STEPS, num_classes=C, batch_size=B)
    assert [(e.kind, e.epoch, e.step) for e in found] == [("collapse", 2, 20)]
    assert found[0].threshold == pytest.approx(chance)
    moving = gradients_frame(logits([0.3] * 80))  # loss at chance, output still moves
    assert ev.detect_collapse(epochs, moving, NO_STEPS, num_classes=C, batch_size=B) == []
    learning = epochs_frame([2.0, 2.3, 2.3, 2.1])
    assert ev.detect_collapse(learning, gradients, NO_STEPS, num_classes=C, batch_size=B) == []


def test_collapse_starts_after_the_last_batch_that_beat_chance() -> None:
    chance = math.log(C)
    losses = [chance] * 30 + [0.85 * chance, 0.95 * chance] + [chance] * 48  # a dip at step 30
    steps = steps_frame([1.0] * 80, losses)
    epochs = epochs_frame([chance] * 4)
    gradients = gradients_frame(logits([0.3] * 31 + [UNIFORM] * 49))
    found = ev.detect_collapse(epochs, gradients, steps, num_classes=C, batch_size=B)
    assert [(e.step, e.epoch) for e in found] == [(31, 2)]  # 5% below chance is not a dip
    late = steps_frame([1.0] * 80, [chance] * 79 + [0.5])  # the last batch beat chance
    assert ev.detect_collapse(epochs, gradients, late, num_classes=C, batch_size=B) == []


def test_collapse_from_the_loss_alone_when_no_logits_gradient_is_recorded() -> None:
    epochs = epochs_frame([math.log(3)] * 3)
    found = ev.detect_collapse(epochs, NO_GRADIENTS, NO_STEPS, num_classes=3)
    assert [(e.epoch, e.step) for e in found] == [(1, None)]


# ---------------------------------------------------------------------------- divergence
def test_divergence_at_the_first_non_finite_loss() -> None:
    losses = [1.0] * 10 + [math.inf, math.nan]
    found = ev.detect_divergence(steps_frame([1.0] * 12, losses), epochs_frame([1.0]),
                                 num_classes=C)
    assert [(e.kind, e.step, e.epoch) for e in found] == [("divergence", 10, 1)]


def test_divergence_from_the_epochs_without_steps() -> None:
    found = ev.detect_divergence(NO_STEPS, epochs_frame([1.0, math.nan]), num_classes=C)
    assert [(e.step, e.epoch) for e in found] == [(None, 2)]
    huge = epochs_frame([1.0, 10.1 * math.log(C)])
    assert [e.epoch for e in ev.detect_divergence(NO_STEPS, huge, num_classes=C)] == [2]
    assert ev.detect_divergence(NO_STEPS, epochs_frame([1.0, 9.9 * math.log(C)]),
                                num_classes=C) == []


# ---------------------------------------------------------------------------- plateau, improving
def test_plateau_is_a_stalled_loss_before_the_data_is_fit() -> None:
    stalled = epochs_frame([1.5, 1.2, 1.2, 1.195, 1.199], train_acc=[0.4] * 5)
    assert [(e.kind, e.epoch) for e in ev.detect_plateau(stalled, NO_STEPS, NO_GRADIENTS)] == [
        ("plateau", 2)]
    converged = epochs_frame([1.5, 0.01, 0.01, 0.01, 0.01], train_acc=[0.4] + [1.0] * 4)
    assert ev.detect_plateau(converged, NO_STEPS, NO_GRADIENTS) == []
    too_short = epochs_frame([1.2, 1.2, 1.2], train_acc=[0.4] * 3)
    assert ev.detect_plateau(too_short, NO_STEPS, NO_GRADIENTS) == []
    falling = epochs_frame([1.5, 1.2, 1.1, 1.0, 0.9], train_acc=[0.4] * 5)
    assert ev.detect_plateau(falling, NO_STEPS, NO_GRADIENTS) == []


def test_still_improving_needs_a_new_best_by_a_margin_and_a_falling_loss() -> None:
    rising = epochs_frame([1.0, 0.8, 0.6], val_acc=[0.5, 0.6, 0.62])
    assert [(e.kind, e.epoch, e.value) for e in ev.detect_still_improving(rising)] == [
        ("still_improving", 3, 0.62)]
    assert ev.detect_still_improving(epochs_frame([1.0, 0.8, 0.6],
                                                  val_acc=[0.5, 0.6, 0.605])) == []
    assert ev.detect_still_improving(epochs_frame([1.0, 0.6, 0.6],
                                                  val_acc=[0.5, 0.6, 0.7])) == []


# ---------------------------------------------------------------------------- vanishing at init
def first_last(first: float, last: float, later: float = 1.0) -> pd.DataFrame:
    return gradients_frame({("features.0", "conv", 0, "weight_grad_norm"): [first, later],
                            ("features.3", "conv", 1, "weight_grad_norm"): [1.0, 1.0],
                            ("features.6", "conv", 2, "weight_grad_norm"): [last, 1.0],
                            ("fc", "linear", 3, "weight_grad_norm"): [1e-20, 1.0]})


def test_vanishing_at_init_uses_the_reports_threshold_on_the_conv_layers() -> None:
    assert ev.VANISHING_BELOW == 0.1  # analysis.summary's vanishing verdict
    found = ev.detect_vanishing_at_init(first_last(0.05, 1.0))
    assert [(e.kind, e.step, e.value, e.threshold) for e in found] == [
        ("vanishing_at_init", 0, 0.05, 0.1)]
    assert ev.detect_vanishing_at_init(first_last(0.1, 1.0)) == []  # at the threshold: no
    assert ev.detect_vanishing_at_init(first_last(1.0, 1.0, later=1e-6)) == []  # later only


def first_last_both(weight: tuple[float, float], output: tuple[float, float]) -> pd.DataFrame:
    """Step 0 only: the first and last conv layers' weight and output gradients."""
    values: dict[tuple[str, str, int, str], list[float]] = {}
    for metric, (first, last) in (("weight_grad_norm", weight), ("output_grad_norm", output)):
        values.update({("features.0", "conv", 0, metric): [first],
                       ("features.3", "conv", 1, metric): [1.0],
                       ("features.6", "conv", 2, metric): [last]})
    return gradients_frame(values)


def test_vanishing_at_init_fires_on_the_output_gradient_alone() -> None:
    found = ev.detect_vanishing_at_init(first_last_both((0.54, 1.0), (0.03, 1.0)))
    assert [(e.kind, e.step, e.value, e.threshold) for e in found] == [
        ("vanishing_at_init", 0, 0.03, 0.1)]
    assert ev.detect_vanishing_at_init(first_last_both((0.54, 1.0), (0.5, 1.0))) == []


def test_vanishing_at_init_prefers_the_weight_gradient_when_both_vanish() -> None:
    found = ev.detect_vanishing_at_init(first_last_both((0.02, 1.0), (0.03, 1.0)))
    assert [e.value for e in found] == [0.02]


def test_vanishing_at_init_wording_names_the_metric_that_vanished() -> None:
    (event,) = ev.detect_vanishing_at_init(first_last_both((0.54, 1.0), (0.03, 1.0)))
    assert event.detail == ("at initialisation (step 0) the output gradient's first-to-last "
                            "ratio was 0.03 while the weight gradient's was 0.54")
    (event,) = ev.detect_vanishing_at_init(first_last(0.05, 1.0))
    assert "features.0's weight-gradient norm was 0.05x that of features.6" in event.detail


# ---------------------------------------------------------------------------- all together
def failing_run() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The issue's vgg_deep: a spike right after warm-up, then dead layers, then collapse."""
    count = 7 * PER_EPOCH
    norms = [0.3] * 41 + [14.5] + [1e-4] * (count - 42)
    losses = [1.5] * 41 + [2.9] + [math.log(C)] * (count - 42)  # learning, until the spike
    steps = steps_frame(norms, losses)
    dead = {(f"features.{i}", "conv", i, "dead_fraction"):
            [0.5] * 50 + [0.97] * (count - 50) if i < 26 else [0.5] * count for i in range(29)}
    dead.update(logits([UNIFORM] * count))
    epochs = epochs_frame([1.5, 1.5, 2.29] + [math.log(C)] * 4, val_acc=[0.5, 0.5] + [0.1] * 5,
                          train_acc=[0.5, 0.5] + [0.1] * 5)
    return steps, gradients_frame(dead), epochs


def test_the_issues_failure_is_diagnosed_as_instability_then_dead_units_then_collapse() -> None:
    steps, gradients, epochs = failing_run()
    found = detect_events(steps, gradients, epochs, num_classes=C, run="vgg_deep",
                          batch_size=B, warmup_end=40)
    # in step order: the collapse from the step after the last batch that beat chance
    assert [(e.kind, e.step) for e in found] == [
        ("instability", 41), ("collapse", 41), ("dead_units", 50)]
    diagnosis = diagnose(found)
    assert diagnosis.cause == "instability"
    assert diagnosis.cause_event is not None and diagnosis.cause_event.step == 41
    assert {e.kind for e in diagnosis.consequences} == {"dead_units", "collapse"}


def test_no_events_is_healthy() -> None:
    steps = steps_frame([1.0] * 60, [1.0 - s / 100 for s in range(60)])
    epochs = epochs_frame([1.0, 0.6, 0.3, 0.2], val_acc=[0.9, 0.95, 0.97, 0.97],
                          train_acc=[0.7, 0.9, 0.97, 0.99])
    assert detect_events(steps, NO_GRADIENTS, epochs, num_classes=C) == []
    assert diagnose([], run="r").cause == "healthy"


def test_the_cause_is_the_earliest_root_event_whatever_the_order_given() -> None:
    dead = Event("r", "dead_units", 0, 1, 4.0, 0.9, "dead")
    spike = Event("r", "instability", 30, 2, 9.0, 3.0, "spike")
    collapse = Event("r", "collapse", 0, 1, 2.3, 2.3, "collapse")
    assert diagnose([spike, collapse, dead]).cause == "dead_units"
    # a collapse in an earlier epoch than the first root event is the cause itself
    assert diagnose([spike, collapse]).cause == "collapse"
    assert diagnose([spike, Event("r", "collapse", 40, 2, 2.3, 2.3, "c")]).cause == \
        "instability"
    assert diagnose([spike, Event("r", "collapse", 30, 2, 2.3, 2.3, "c")]).cause == \
        "instability"  # at one step the root event comes first
    assert diagnose([collapse]).cause == "collapse"
    assert diagnose([Event("r", "plateau", 5, 2, 1.0, 1.0, "p"), collapse]).cause == "collapse"


def test_detect_events_refuses_fewer_than_two_classes() -> None:
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        detect_events(NO_STEPS, NO_GRADIENTS, epochs_frame([1.0]), num_classes=1)


def test_a_probe_frame_needs_its_number_of_classes() -> None:
    from gradprobe.analysis.load import RunData

    run = RunData.from_frame(first_last(0.05, 1.0), name="probe")
    with pytest.raises(ValueError, match="pass num_classes= to events_for_run"):
        ev.events_for_run(run)
    assert [e.kind for e in ev.events_for_run(run, num_classes=3)] == ["vanishing_at_init"]


# ---------------------------------------------------------------------------- wording
def test_the_diagnosis_says_what_happened_and_when() -> None:
    steps, gradients, epochs = failing_run()
    found = detect_events(steps, gradients, epochs, num_classes=C, run="vgg_deep",
                          batch_size=B, warmup_end=41)
    text = diagnose(found).text
    assert text.startswith("at step 41, the first step after warm-up ended, the global "
                           "gradient norm reached 14.5 (running median 0.3)")
    assert "by epoch 3 (step 50), 90% or more of the units after the ReLU were dead in 26 of " \
           "29 conv layers" in text
    assert text.endswith("; from step 41 (epoch 3) on the output did not depend on the input: the "
                         "training loss stayed at ln(10) = 2.303 and the logits' gradient at "
                         "0.168, the uniform-softmax value 0.168")


def test_the_method_text_states_every_threshold() -> None:
    text = ev.method_text()
    for stated in ("10x the median of the 25 steps", "by less than 0.33 of that factor",
                   "3x its running median and 2x ln(classes)", "90%",
                   "more than 50% of the layers", "within 2% of ln(classes)", "within 5%",
                   "fell 10% below ln(classes)",
                   "sqrt((C - 1) / (C B))", "less than 1% over the last 3 epochs", "below 95%",
                   "by at least 1 point(s)", "below 0.1"):
        assert stated in text, stated


def test_events_are_json_friendly() -> None:
    event = Event("r", "divergence", 3, 1, math.nan, math.inf, "at step 3 ...")
    assert event.as_dict() == {"run": "r", "kind": "divergence", "step": 3, "epoch": 1,
                               "value": None, "threshold": None, "detail": "at step 3 ..."}


def test_the_timeline_draws_four_panels_on_one_step_axis(tmp_path: Path) -> None:
    from gradprobe.analysis.figures.timeline import plot_timeline

    steps, gradients, epochs = failing_run()
    found = detect_events(steps, gradients, epochs, num_classes=C, batch_size=B, warmup_end=41)
    figure = plot_timeline(steps, gradients, name="vgg_deep", events=found, num_classes=C,
                           warmup_end=41)
    axes = figure.get_axes()
    assert len([ax for ax in axes if ax.get_ylabel()]) == 4
    assert {ax.get_xlim() for ax in axes if ax.get_ylabel()} == {axes[0].get_xlim()}
    written = plot_timeline(steps, gradients, tmp_path / "timeline.png", events=found)
    assert written == tmp_path / "timeline.png" and written.stat().st_size > 0
    empty = plot_timeline(NO_STEPS, NO_GRADIENTS)
    assert "no per-step records" in " ".join(t.get_text() for ax in empty.get_axes()
                                             for t in ax.texts)


# ---------------------------------------------------------------------------- real failures
# Tiny real runs (digits at 8x8, a 2-layer MLP, about 2 s each) whose cause is known. Each must be
# diagnosed as that cause, and every other event must be one of its symptoms.
SYMPTOMS = {"instability": {"dead_units", "divergence", "collapse", "plateau"},
            "dead_units": {"collapse", "plateau"}, "vanishing_at_init": {"collapse", "plateau"},
            "healthy": set()}
HEALTHY_LR = 0.05


def trained_diagnosis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, depth: int = 2,
                      width: float = 0.25, activation: str = "relu", init: str = "kaiming",
                      lr: float = HEALTHY_LR, epochs: int = 6, bias: float | None = None,
                      **train_options: object) -> ev.Diagnosis:
    import torch

    import gradprobe.train.loop as loop
    from gradprobe.analysis.load import load_run
    from gradprobe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from gradprobe.train import train

    if bias is not None:  # every hidden layer's bias set to `bias`: its ReLUs start dead
        build = loop.build_model

        def biased(*args: object, **kwargs: object) -> torch.nn.Module:
            model = build(*args, **kwargs)
            with torch.no_grad():
                for name, parameter in model.named_parameters():
                    if name.startswith("hidden.") and name.endswith("bias"):
                        parameter.fill_(bias)
            return model

        monkeypatch.setattr(loop, "build_model", biased)
    config = RunConfig(
        model=ModelConfig(name="mlp", depth=depth, width=width, activation=activation,
                          init=init),
        data=DataConfig(dataset="digits", image_size=8),
        train=TrainConfig(epochs=epochs, batch_size=32, lr=lr, momentum=0.9, **train_options),
    )
    run = load_run(train(config, tmp_path / "run").run_dir)
    assert not run.steps.empty
    return diagnose(ev.events_for_run(run))


def assert_diagnosed(diagnosis: ev.Diagnosis, cause: str) -> None:
    kinds = {event.kind for event in diagnosis.events}
    assert diagnosis.cause == cause, diagnosis.text
    assert kinds - {cause} <= SYMPTOMS[cause], diagnosis.text


def test_a_healthy_small_net_has_no_event(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    diagnosis = trained_diagnosis(tmp_path, monkeypatch, width=0.5, epochs=10, step_size=3)
    assert_diagnosed(diagnosis, "healthy")
    assert diagnosis.events == ()


def test_a_learning_rate_forty_times_too_high_is_instability_then_dead_units(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    diagnosis = trained_diagnosis(tmp_path, monkeypatch, lr=40 * HEALTHY_LR, warmup_epochs=1)
    assert_diagnosed(diagnosis, "instability")
    then = {event.kind for event in diagnosis.consequences}
    assert then & {"dead_units", "divergence"}, diagnosis.text


def test_a_very_negative_bias_is_dead_units_from_the_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    diagnosis = trained_diagnosis(tmp_path, monkeypatch, bias=-10.0)
    assert_diagnosed(diagnosis, "dead_units")
    assert diagnosis.cause_event is not None and diagnosis.cause_event.step == 0


def test_a_deep_sigmoid_stack_with_default_init_vanishes_at_initialisation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    diagnosis = trained_diagnosis(tmp_path, monkeypatch, depth=10, activation="sigmoid",
                                  init="default")
    assert_diagnosed(diagnosis, "vanishing_at_init")
    assert diagnosis.cause_event is not None and diagnosis.cause_event.value < 1e-4


def test_the_diagnose_study_ships_the_ablations_of_the_quick_preset() -> None:
    from gradprobe.study.runner import load_builtin, plan_study

    study = plan_study(load_builtin("diagnose"), preset="quick")
    configs = {run.name: run.config for run in study.runs}
    assert list(configs) == ["vgg_deep", "vgg_deep-no-momentum", "vgg_deep-clip-1",
                             "vgg_deep-lr-0.001", "vgg_deep-width-0.25", "vgg_deep-width-0.5"]
    base = configs["vgg_deep"]
    assert (base.model.name, base.model.width, base.data.dataset, base.data.image_size) == (
        "vgg_deep", 0.125, "digits", 32)
    assert (base.train.momentum, base.train.lr, base.train.grad_clip) == (0.9, 0.01, None)
    changed = {name: {f"{section}.{key}": value
                      for section in ("model", "train")
                      for key, value in getattr(config, section).model_dump().items()
                      if value != getattr(base, section).model_dump()[key]}
               for name, config in configs.items() if name != "vgg_deep"}
    assert changed == {
        "vgg_deep-no-momentum": {"train.momentum": 0.0},
        "vgg_deep-clip-1": {"train.grad_clip": 1.0},
        "vgg_deep-lr-0.001": {"train.lr": 0.001},
        "vgg_deep-width-0.25": {"model.width": 0.25},
        "vgg_deep-width-0.5": {"model.width": 0.5},
    }
