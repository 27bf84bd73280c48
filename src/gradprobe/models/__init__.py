"""The model zoo: a registry of architectures that all take the same options.

    from gradprobe.models import build_model, list_models
    model = build_model("vgg_deep", width=0.25, norm="batch", activation="tanh", init="xavier")
    model.probe_points      # [ProbePoint(name, kind, depth), ...] in forward order
    model.gradprobe_info    # {"family", "depth", "residual", "norm", "activation", "init", ...}

Families: vgg11/13/16/19 and vgg_deep (vgg.py); resnet18/34, their plain twins plain18/34, and
the CIFAR depth-6n+2 `resnet`/`plain` (resnet.py); `mlp` (mlp.py); `plain_stack` and
`residual_stack`, constant-width conv stacks of any depth for `gradprobe scan` (stacks.py).
Importing this package registers them all. The registry records each family's defaults and
options (`model_family(name).defaults`); `residual` is an option of the resnet and stack
families, whose plain twins are the same builders registered with `residual=False`
(`residual_twin`, `residual_variant`).
"""

from gradprobe.models import mlp, resnet, stacks, vgg  # noqa: F401  (registers the families)
from gradprobe.models.probe_points import ProbePoint
from gradprobe.models.registry import (
    ModelFamily,
    build_model,
    family_default,
    list_models,
    model_family,
    models_with_option,
    register_model,
    residual_twin,
    residual_variant,
)
from gradprobe.models.summary import count_parameters, model_summary

__all__ = [
    "ModelFamily",
    "ProbePoint",
    "build_model",
    "count_parameters",
    "family_default",
    "list_models",
    "model_family",
    "model_summary",
    "models_with_option",
    "register_model",
    "residual_twin",
    "residual_variant",
]
