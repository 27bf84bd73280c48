"""The probe's wiring: building its statistics, schedule and hooks, torch.compile and AMP/DDP
state, reducing partial sums across ranks, and the checks that name every layer that yields
nothing or a checkpoint that does not fit (one job each, no state)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.amp.grad_scaler import GradScaler, OptState
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from gradprobe.errors import InputError
from gradprobe.metrics import default_metrics, metric_info
from gradprobe.probe.base import Measurement, Source, Statistic, create_statistic
from gradprobe.probe.hooks import Collector
from gradprobe.probe.layers import ACTIVATION_TYPES
from gradprobe.probe.norms import accumulator_dtype

Schedule = int | Callable[[int], bool]
_NAMES_PER_TYPE = 6  # unprobed modules named per type in the warning; the rest are counted
Warn = Callable[[str, str], None]


def amp_state(
    scaler: GradScaler | None, optimizers: list[Optimizer]
) -> tuple[Tensor | float, bool]:
    """(loss scale, whether the weight gradients still carry it) for this step."""
    if scaler is None or not scaler.is_enabled():
        return 1.0, False
    scale = scaler._get_scale_async()  # the device tensor: reading get_scale() would sync
    if scale is None:
        raise RuntimeError("record() got a GradScaler that has not scaled a loss yet")
    # GradScaler keeps a stage per optimiser; UNSCALED means unscale_() already divided the
    # .grad tensors (e.g. before clipping), so they must not be divided again.
    states = scaler._per_optimizer_states
    watched = [states[id(opt)] for opt in optimizers if id(opt) in states]
    candidates = watched if optimizers else list(states.values())
    unscaled = any(state["stage"] is OptState.UNSCALED for state in candidates)
    return scale.reshape(()).to(accumulator_dtype(scale.device)), not unscaled


def world_size(distributed: bool | None) -> int:
    """Ranks whose output statistics are combined: 1 unless distributed."""
    initialised = dist.is_available() and dist.is_initialized()
    if distributed and not initialised:
        raise RuntimeError("distributed=True but torch.distributed is not initialised")
    if distributed is False or not initialised:
        return 1
    return dist.get_world_size()


def check_hooks_ran(
    collector: Collector, names: list[str], by_source: dict[Source, list[Statistic]],
    grads_exist: bool, armed: bool, step: int, expected: int, warn: Warn,
) -> None:
    """No silent gaps: explain layers without output statistics at a recorded step."""
    if not collector.hooks_fired and grads_exist:
        raise RuntimeError(
            "no probed layer has run a forward call since the probe was attached, yet the "
            "parameters have gradients: the model was most likely compiled (torch.compile) "
            "and run before the probe was attached, and compiled code ignores hooks added "
            "later. Attach the probe before torch.compile, or build it on a model that has "
            "not run compiled yet (GradientProbe(torch.compile(model)) works)"
        )
    needs_forward = by_source["output_grad"] or by_source["activation"]
    if not needs_forward:
        return
    if not armed and collector.ran_this_step:
        warn(
            "unarmed",
            f"record(step={step}) recorded a step the probe did not expect (it expected step "
            f"{expected}), so its hooks were idle and output and activation metrics are "
            "missing for it; call record() at every optimiser step with consecutive step "
            "numbers, or without arguments",
        )
    if not collector.forward_seen:
        return
    for index, name in enumerate(names):
        if collector.depths[index] < 0:
            warn(
                f"never-ran:{name}",
                f"probed layer {name!r} has not been called in a training forward pass (its "
                "parent may use its parameters directly), so it has no depth and no output or "
                "activation metrics; select the module that is called",
            )
        if index in collector.no_tensor_output:
            warn(
                f"no-tensor:{name}",
                f"probed layer {name!r} returns no tensor, so it has no output or activation "
                "metrics; select a module that returns a tensor",
            )


def warn_parameterless(
    names: list[str], modules: list[nn.Module], empty: list[bool],
    by_source: dict[Source, list[Statistic]], warn: Warn,
) -> None:
    """Warn once about layers whose parameters can give no weight metric."""
    if not by_source["weight_grad"] and not by_source["update"]:
        return
    for name, module, nothing in zip(names, modules, empty, strict=True):
        if not nothing:
            continue
        own = [param_name for param_name, _ in module.named_parameters(recurse=False)]
        if own:
            fix = (f"its parameters ({', '.join(own)}) are not named like a weight; pass "
                   "parameters='all' to measure every parameter of the layer")
        elif any(True for _ in module.parameters()):
            fix = ("its parameters belong to its submodules; select those (layers='all', "
                   "or their names from model.named_modules())")
        else:
            fix = "it has no parameter at all; leave it out of layers="
        warn(
            f"no-params:{name}",
            f"probed layer {name!r} ({type(module).__name__}) has no weight of its own, so it "
            f"has no weight metrics: {fix}",
        )


def warn_unprobed(
    unprobed: list[tuple[str, nn.Module]], measured_by: dict[int, str], warn: Warn
) -> None:
    """Name, once, every module with a trainable parameter that the default selection skips,
    with why and how to include it. `measured_by`: id(parameter) -> the probed layer whose
    weight metrics cover it (a tied weight)."""
    if not unprobed:
        return

    def describe(name: str, module: nn.Module) -> str:
        owners = {measured_by.get(id(param)) for param in module.parameters(recurse=False)
                  if param.requires_grad}
        if None in owners:
            return f"{name!r} ({type(module).__name__})"
        tied = ", ".join(repr(owner) for owner in sorted(owners))  # type: ignore[arg-type]
        return f"{name!r} ({type(module).__name__}; its weight is measured as part of {tied})"

    by_type: dict[str, list[str]] = {}
    for name, module in unprobed:
        by_type.setdefault(type(module).__name__, []).append(describe(name, module))
    # Every module is counted; past _NAMES_PER_TYPE of one type (a ResNet's BatchNorms) the
    # rest are counted only: they share the reason and the fix.
    listed = ", ".join(
        ", ".join(described[:_NAMES_PER_TYPE])
        + (f" and {len(described) - _NAMES_PER_TYPE} more {kind}" if len(described)
           > _NAMES_PER_TYPE else "")
        for kind, described in by_type.items()
    )
    warn(
        "unprobed",
        f"GradientProbe does not probe {len(unprobed)} module(s) with trainable parameters "
        f"of their own (no metrics of their own): {listed}. By default it probes "
        "convolutions (transposed too), Linear, RNN/LSTM/GRU and MultiheadAttention; "
        "embeddings, normalisation layers and module types it does not know are opt-in. To "
        "include them pass layers='all' (every module with a parameter of its own), or list "
        "the types or names, e.g. "
        "layers=[*gradprobe.probe.DEFAULT_LAYER_TYPES, nn.Embedding, nn.LayerNorm]",
    )


def warn_no_activation(names: list[str], missing: set[int], warn: Warn) -> None:
    """Name, once, each layer whose activation statistics are left out, and why."""
    for index in sorted(missing):
        name = names[index]
        warn(
            f"no-activation:{name}",
            f"probed layer {name!r}: no activation module (nn.ReLU, nn.Tanh, ...; see "
            "gradprobe.probe.layers.ACTIVATION_TYPES) ran after it before the next probed "
            "layer, so activation_mean, activation_std and dead_fraction are left out for it "
            "(rather than taken from another layer). A functional activation (F.relu, "
            "torch.tanh) is not seen: use the module (nn.ReLU()) to measure it",
        )


def create_statistics(metrics: Sequence[str]) -> list[Statistic]:
    if isinstance(metrics, str) or not metrics:
        raise InputError(
            f"metrics={metrics!r} must be a non-empty list of metric names, e.g. "
            f"{list(default_metrics())}"
        )
    duplicates = sorted({name for name in metrics if list(metrics).count(name) > 1})
    if duplicates:
        raise InputError(f"metrics lists {', '.join(duplicates)} twice; list each metric once")
    return [create_statistic(name) for name in metrics]


def schedule(every: Schedule) -> Callable[[int], bool]:
    if callable(every):
        return every
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InputError(
            f"every={every!r} must be a positive integer (record every k-th step) or a "
            "callable step -> bool"
        )
    return lambda step: step % every == 0


def known_metric(name: str) -> bool:
    try:
        metric_info(name)
    except InputError:
        return False
    return True


def divide(measurement: Measurement, scale: Tensor | float) -> Measurement:
    if isinstance(scale, float) and scale == 1.0:
        return measurement
    return Measurement(measurement.values / scale, measurement.defined)


def forget_compiled_code(warn: Callable[[str, str], None]) -> None:
    """Make torch.compile trace the hooks about to be added, now and later.

    By default compiled code does not guard on module hooks, so code compiled for another
    instance of the model's classes, before or after attaching, would run without them: every
    output metric missing. So when torch.compile is in use the probe turns those guards on
    (dynamo's `skip_nnmodule_hook_guards = False`: code compiled from now on checks the hooks)
    and drops code compiled before (the next call recompiles, hooks included). If dynamo is
    first imported after attaching, `record()` still refuses to report a step whose hooks
    compiled code skipped.
    """
    if "torch._dynamo" not in sys.modules:
        return  # torch.compile has not been used yet (importing dynamo costs seconds)
    from torch._dynamo import config, convert_frame

    config.skip_nnmodule_hook_guards = False
    seen = getattr(getattr(convert_frame, "output_codes", None), "seen", None)
    if seen:
        torch._dynamo.reset()
        warn(
            "dynamo-reset",
            "GradientProbe.attach() reset torch.compile's caches so that compiled models "
            "run the probe's hooks; compiled functions recompile on their next call. Attach "
            "the probe before compiling to avoid the recompilation",
        )


def functional_parent(model: nn.Module, module: nn.Module) -> nn.Module | None:
    """The MultiheadAttention whose `out_proj` is `module`: it applies it without calling it."""
    for parent in model.modules():
        if isinstance(parent, nn.MultiheadAttention) and parent.out_proj is module:
            return parent
    return None


def layer_hooks(
    model: nn.Module, modules: list[nn.Module], collector: Collector, activations: bool
) -> list[RemovableHandle]:
    """Register the collector's forward hooks on each probed layer (and on the parent that
    applies a layer functionally), plus the activation hooks when `activations`."""
    handles: list[RemovableHandle] = []
    routes: dict[int, list[int]] = {}  # id(module) -> the layers whose output is its output
    hosts: dict[int, nn.Module] = {}
    for index, module in enumerate(modules):
        routes.setdefault(id(module), []).append(index)
        hosts[id(module)] = module
        parent = functional_parent(model, module)
        if parent is not None:  # a parent that is probed too gets one hook for both
            routes.setdefault(id(parent), []).append(index)
            hosts[id(parent)] = parent
    for key, indices in routes.items():
        hook = functools.partial(collector.on_layer_output, tuple(sorted(indices)))
        handles.append(hosts[key].register_forward_hook(hook))
    if activations:
        handles.append(model.register_forward_pre_hook(collector.on_forward_start))
        for module in model.modules():
            if isinstance(module, ACTIVATION_TYPES):
                handles.append(module.register_forward_hook(collector.on_activation))
    return handles


def reduce_partials(
    collector: Collector,
    by_source: dict[Source, list[Statistic]],
    distributed: bool | None,
    device: torch.device,
) -> tuple[dict[str, Tensor], dict[Source, Tensor]]:
    """Per statistic (layers, width) sums and per source (layers,) call counts."""
    blocks = collector.blocks(device)
    if blocks and world_size(distributed) > 1:
        # One collective for every statistic: each rank saw its own slice of the batch.
        reduced = torch.cat([block for _, block in blocks], dim=1)
        dist.all_reduce(reduced)
        parts = reduced.split([block.shape[1] for _, block in blocks], dim=1)
        blocks = [(source, part) for (source, _), part in zip(blocks, parts, strict=True)]
    partial_sums: dict[str, Tensor] = {}
    calls_by_source: dict[Source, Tensor] = {}
    for source, block in blocks:
        columns = block.split([stat.width for stat in by_source[source]] + [1], dim=1)
        for stat, sums in zip(by_source[source], columns[:-1], strict=True):
            partial_sums[stat.name] = sums
        calls_by_source[source] = columns[-1][:, 0]
    return partial_sums, calls_by_source


def check_resumable(
    state: dict[str, Any], state_format: int, layers: list[str], metrics: list[str]
) -> None:
    """Refuse a probe checkpoint of another format, or of other layers or metrics."""
    if state.get("format") != state_format:
        raise InputError(
            f"probe state has format {state.get('format')!r}, this gradprobe reads "
            f"{state_format}; resume with the gradprobe version that wrote the checkpoint"
        )
    for what, saved, mine in (("layers", state["layers"], layers),
                              ("metrics", state["metrics"], metrics)):
        if list(saved) != mine:
            raise InputError(
                f"the checkpoint's probe recorded {what} {list(saved)}, this probe records "
                f"{mine}; build the probe with the same model, layers and metrics to resume"
            )
