"""Tests of the model zoo: every registered model, the pinned torchvision counts, the init
schemes against their formulas, probe points against forward execution, and input errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torchvision
from torch import nn

from gradprobe.errors import InputError
from gradprobe.models import (
    ProbePoint,
    build_model,
    count_parameters,
    family_default,
    list_models,
    model_family,
    model_summary,
    models_with_option,
    register_model,
    residual_twin,
    residual_variant,
)
from gradprobe.models import registry as registry_module
from gradprobe.models.init import INITS
from gradprobe.models.layers import (
    ACTIVATIONS,
    NORMS,
    create_act,
    create_norm,
    get_act_layer,
    scale_channels,
)
from gradprobe.models.vgg import VGG_DEEP_DEFAULT_DEPTH, deep_stages

SMALL = 0.25  # width for every test that does not pin a parameter count
NUM_CLASSES = 7

# Small depths for the families that have one, so each test stays cheap.
SMALL_DEPTH = {"resnet": 8, "plain": 8, "mlp": 3, "plain_stack": 5, "residual_stack": 5}

# The recommended gains, written out from torch.nn.init.calculate_gain's table (GELU: ReLU's).
EXPECTED_GAIN = {
    "relu": math.sqrt(2.0),
    "leaky_relu": math.sqrt(2.0 / (1 + 0.01**2)),
    "tanh": 5.0 / 3.0,
    "sigmoid": 1.0,
    "gelu": math.sqrt(2.0),
}


def small_model(name: str, **options: object) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, width=SMALL, depth=SMALL_DEPTH.get(name), **options)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_registry_lists_every_family_sorted() -> None:
    names = list_models()
    assert names == sorted(names)
    expected = {"vgg11", "vgg13", "vgg16", "vgg19", "vgg_deep", "resnet18", "resnet34"}
    expected |= {"plain18", "plain34", "resnet", "plain", "mlp", "plain_stack", "residual_stack"}
    assert expected <= set(names)


# --- every model: forward, backward, input channels ----------------------------------------------


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_parameter_gets_a_gradient(name: str, size: int) -> None:
    model = small_model(name, num_classes=NUM_CLASSES)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name}: {parameter_name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name}: {parameter_name}"


@pytest.mark.parametrize("name", list_models())
def test_one_input_channel(name: str) -> None:
    model = small_model(name, in_channels=1, num_classes=3)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


# --- probe points --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_probe_points_follow_forward_execution_order(name: str) -> None:
    model = small_model(name)
    executed: list[str] = []
    handles = [
        module.register_forward_hook(lambda *_, name=layer: executed.append(name))
        for layer, module in weight_layers(model)
    ]
    model(torch.randn(2, 3, 32, 32))
    for handle in handles:
        handle.remove()

    points = model.probe_points
    assert all(isinstance(point, ProbePoint) for point in points)
    assert [point.name for point in points] == executed  # each layer once, in forward order
    assert [point.depth for point in points] == list(range(len(points)))
    modules = dict(model.named_modules())
    for point in points:
        expected_kind = "linear" if isinstance(modules[point.name], nn.Linear) else "conv"
        if point.kind == "shortcut":
            assert ".downsample." in point.name and isinstance(modules[point.name], nn.Conv2d)
        else:
            assert point.kind == expected_kind
    assert points[-1].kind == "linear"  # the classifier is the layer nearest the output

    info = model.gradprobe_info
    assert json.loads(json.dumps(info)) == info  # written into each run's config.json
    main_path = [point for point in points if point.kind != "shortcut"]
    assert info["depth"] == len(main_path)
    assert info["conv_layers"] + info["linear_layers"] == len(main_path)
    assert info["parameters"] == count_parameters(model)
    assert info["residual"] == (name in {"resnet", "resnet18", "resnet34", "residual_stack"})
    assert (info["name"], info["width"], info["activation"], info["init"]) == (
        name,
        SMALL,
        "relu",
        "kaiming",
    )


def test_depths_count_weight_layers_as_the_papers_do() -> None:
    depth_of = {
        "vgg11": 11,
        "vgg16": 16,
        "vgg19": 19,
        "resnet18": 18,
        "resnet34": 34,
        "plain18": 18,
        "plain34": 34,
    }
    for name, depth in depth_of.items():
        assert small_model(name, init="default").gradprobe_info["depth"] == depth, name
    assert build_model("resnet", depth=56, width=SMALL).gradprobe_info["depth"] == 56
    shortcuts = [p for p in small_model("resnet18").probe_points if p.kind == "shortcut"]
    assert [p.name for p in shortcuts] == [f"layer{i}.0.downsample.0" for i in (2, 3, 4)]
    assert not [p for p in small_model("plain18").probe_points if p.kind == "shortcut"]


def test_vgg_deep_is_more_than_twice_vgg16_and_depth_is_configurable() -> None:
    deep = build_model("vgg_deep", width=SMALL)
    assert deep.gradprobe_info["conv_layers"] == VGG_DEEP_DEFAULT_DEPTH >= 2 * 13
    assert deep_stages(13) == (2, 2, 3, 3, 3)  # VGG-16's own table
    for depth in range(5, 70):
        stages = deep_stages(depth)
        assert sum(stages) == depth and max(stages) - min(stages) <= 1
    assert build_model("vgg_deep", depth=8, width=SMALL).gradprobe_info["conv_layers"] == 8


@pytest.mark.parametrize(("name", "depth"), [("plain_stack", 2), ("residual_stack", 8)])
def test_stacks_have_depth_convs_at_constant_width_and_resolution(name: str, depth: int) -> None:
    model = build_model(name, depth=depth, width=0.5)
    convs = [m for _, m in weight_layers(model) if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth
    assert {conv.out_channels for conv in convs} == {16}
    assert all(conv.stride == (1, 1) and conv.kernel_size == (3, 3) for conv in convs)


def test_residual_stack_skips_are_identities() -> None:
    # Zero every block's second conv: a residual block then passes its (non-negative, post-ReLU)
    # input through unchanged, so the net reduces to stem -> pool -> fc; the plain twin does not.
    outputs = {}
    x = torch.randn(2, 3, 16, 16)
    for name in ("residual_stack", "plain_stack"):
        torch.manual_seed(0)
        model = build_model(name, depth=6, width=SMALL, norm="none")  # leftover conv + 2 blocks
        with torch.no_grad():
            for block in list(model.body)[1:]:
                block.conv2.weight.zero_()
                block.conv2.bias.zero_()
            leftover = model.body[0]
            reference = model.fc(model.pool(leftover(model.stem(x))).flatten(1))
        outputs[name] = (model(x), reference)
    assert torch.allclose(*outputs["residual_stack"], atol=1e-6)
    assert not torch.allclose(*outputs["plain_stack"], atol=1e-3)


def test_plain_and_residual_twins_share_module_names() -> None:
    residual = small_model("residual_stack")
    plain = small_model("plain_stack")
    assert residual.state_dict().keys() == plain.state_dict().keys()
    resnet_keys = {k for k in small_model("resnet18").state_dict() if "downsample" not in k}
    assert set(small_model("plain18").state_dict()) == resnet_keys


# --- pinned counts and torchvision equivalence ---------------------------------------------------


def test_resnet18_matches_torchvision_exactly() -> None:
    torch.manual_seed(0)
    ours = build_model("resnet18", num_classes=1000, stem="imagenet", norm="batch")
    assert count_parameters(ours) == 11_689_512
    reference = torchvision.models.resnet18(weights=None)
    ours.load_state_dict(reference.state_dict())  # strict: the same module names
    ours.eval()
    reference.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_resnet34_and_plain18_counts() -> None:
    imagenet = {"num_classes": 1000, "stem": "imagenet", "init": "default"}
    assert count_parameters(build_model("resnet34", **imagenet)) == 21_797_672
    resnet18 = build_model("resnet18", **imagenet)
    projections = sum(
        p.numel() for name, p in resnet18.named_parameters() if ".downsample." in name
    )
    # layer2-4 projections: 1x1 convs 64*128 + 128*256 + 256*512, BN 2 * (128 + 256 + 512)
    assert projections == 64 * 128 + 128 * 256 + 256 * 512 + 2 * (128 + 256 + 512)
    assert count_parameters(build_model("plain18", **imagenet)) == 11_689_512 - projections


@pytest.mark.parametrize(
    ("name", "cfg"), [("vgg11", "A"), ("vgg13", "B"), ("vgg16", "D"), ("vgg19", "E")]
)
def test_vgg_features_match_torchvision(name: str, cfg: str) -> None:
    ours = build_model(name, init="default").features
    reference = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs[cfg])
    assert count_parameters(ours) == count_parameters(reference)
    ours.load_state_dict(reference.state_dict())  # strict: same layout and indices
    if name == "vgg16":
        assert count_parameters(ours) == 14_714_688


def test_width_scales_every_channel_count_including_the_head() -> None:
    model = build_model("vgg16", width=0.5, init="default")
    convs = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert convs == [32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256, 256]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 256), (256, 128), (128, 10)]
    assert scale_channels(64, 0.001) == 1 and scale_channels(16, 0.25) == 4
    tiny = build_model("vgg11", width=0.001)
    assert tiny(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# --- options: norm x activation x init -----------------------------------------------------------


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm", NORMS)
def test_every_option_combination_builds_and_runs(norm: str, activation: str, init: str) -> None:
    torch.manual_seed(0)
    model = build_model("resnet", depth=8, width=SMALL, norm=norm, activation=activation, init=init)
    model.train()
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()
    info = model.gradprobe_info
    assert (info["norm"], info["activation"], info["init"]) == (norm, activation, init)


@pytest.mark.parametrize("name", list_models())
def test_norm_option_adds_or_removes_batch_norm_and_biases(name: str) -> None:
    for norm in NORMS:
        model = small_model(name, norm=norm)
        batch_norms = [
            m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))
        ]
        assert bool(batch_norms) == (norm == "batch"), (name, norm)
        assert model.gradprobe_info["norm"] == norm
        # A bias exactly where no norm follows: everywhere without norm; with batch norm on no
        # conv and no hidden MLP layer, but on the classifier.
        layers = dict(weight_layers(model))
        with_bias = {n for n, m in layers.items() if m.bias is not None}
        if norm == "none":
            assert with_bias == set(layers)
        else:
            assert model.probe_points[-1].name in with_bias
            assert not [n for n in with_bias if isinstance(layers[n], nn.Conv2d)]
            assert not [n for n in with_bias if n.startswith("hidden.")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vgg16", "none"),
        ("vgg_deep", "none"),
        ("mlp", "none"),
        ("resnet18", "batch"),
        ("plain34", "batch"),
        ("resnet", "batch"),
        ("plain", "batch"),
    ],
)
def test_family_default_norm(name: str, expected: str) -> None:
    assert small_model(name, init="default").gradprobe_info["norm"] == expected


def test_factories_look_up_names_and_pass_callables_through() -> None:
    assert isinstance(create_act("leaky_relu"), nn.LeakyReLU)
    assert create_act("leaky_relu").negative_slope == 0.01
    assert get_act_layer(nn.SiLU) is nn.SiLU
    assert isinstance(create_norm("batch", 4, dims=1), nn.BatchNorm1d)
    assert isinstance(create_norm("none", 4), nn.Identity)
    group_norm = create_norm(lambda channels: nn.GroupNorm(2, channels), 4)
    assert isinstance(group_norm, nn.GroupNorm)
    with pytest.raises(InputError, match="relu"):
        create_act("swish")
    with pytest.raises(InputError, match="batch"):
        create_norm("layer", 4)


def test_activations_are_not_inplace() -> None:
    for activation in ACTIVATIONS:
        model = small_model("resnet18", activation=activation, init="default")
        assert not any(getattr(m, "inplace", False) for m in model.modules()), activation


# --- init schemes against their formulas ---------------------------------------------------------


def large_convs(model: nn.Module) -> list[nn.Conv2d]:
    """Conv layers with enough weights for a std estimate to within ~1%."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.numel() >= 9000]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_kaiming_std_is_gain_over_sqrt_fan_in(activation: str) -> None:
    torch.manual_seed(0)
    model = build_model("vgg16", width=SMALL, activation=activation, init="kaiming")
    convs = large_convs(model)
    assert len(convs) >= 5
    for conv in convs:
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        expected = EXPECTED_GAIN[activation] / math.sqrt(fan_in)
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
        assert conv.weight.mean().abs().item() < 0.05 * expected
        assert torch.count_nonzero(conv.bias) == 0
    for linear in (m for m in model.modules() if isinstance(m, nn.Linear)):
        assert torch.count_nonzero(linear.bias) == 0


def test_xavier_std_and_orthogonal_rows() -> None:
    torch.manual_seed(0)
    model = build_model("vgg16", width=SMALL, activation="tanh", init="xavier")
    for conv in large_convs(model):
        fan_in = conv.in_channels * 9
        fan_out = conv.out_channels * 9
        expected = (5.0 / 3.0) * math.sqrt(2.0 / (fan_in + fan_out))
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)

    model = build_model("vgg16", width=SMALL, activation="relu", init="orthogonal")
    for conv in large_convs(model):
        rows = conv.weight.flatten(1)  # (out_channels, in_channels * 9): more columns than rows
        gram = rows @ rows.T
        torch.testing.assert_close(gram, 2.0 * torch.eye(len(rows)), atol=1e-4, rtol=0)


def test_default_init_leaves_pytorch_init_untouched() -> None:
    torch.manual_seed(0)
    model = build_model("plain_stack", depth=2, width=SMALL, init="default")
    # The same layers built by hand under the same seed, in construction order.
    torch.manual_seed(0)
    reference = [nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 10)]
    ours = [module for _, module in weight_layers(model)]
    for built, expected in zip(ours, reference, strict=True):
        torch.testing.assert_close(built.weight, expected.weight, rtol=0, atol=0)
        torch.testing.assert_close(built.bias, expected.bias, rtol=0, atol=0)
    torch.manual_seed(0)
    kaiming = build_model("plain_stack", depth=2, width=SMALL, init="kaiming")
    assert not torch.equal(kaiming.stem.conv.weight, model.stem.conv.weight)


# --- summary -------------------------------------------------------------------------------------


def test_model_summary_lists_layers_and_probe_points_and_restores_the_model() -> None:
    model = small_model("resnet18")
    model.train()
    text = model_summary(model, input_size=(1, 3, 32, 32))
    assert "Total params: " + f"{count_parameters(model):,}" in text
    assert "Units." not in text
    for point in model.probe_points:
        assert f"{point.depth:>5}  {point.name}" in text
    assert "layer2.0.downsample.0" in text and "shortcut" in text
    assert model.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    with pytest.raises(InputError, match="input_size"):
        model_summary(model, input_size=(1, 1, 32, 32))


def test_model_summary_of_any_module() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 2))
    rows = [line.split() for line in model_summary(model).splitlines()[-2:]]
    assert rows == [["0", "0", "conv"], ["1", "2", "linear"]]


# --- registry and input errors -------------------------------------------------------------------


def test_duplicate_registration_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_FAMILIES", dict(registry_module._FAMILIES))

    def builder(**options: object) -> nn.Module:
        raise AssertionError("never called")

    register_model("test_only_model")(builder)
    assert "test_only_model" in list_models()
    with pytest.raises(ValueError, match="already registered"):
        register_model("test_only_model")(builder)
    with pytest.raises(ValueError, match="already registered"):
        register_model("vgg16")(builder)


def test_unknown_model_lists_the_known_names() -> None:
    with pytest.raises(InputError) as error:
        build_model("vgg17")
    assert isinstance(error.value, ValueError)
    for name in list_models():
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("name", "options", "must_mention"),
    [
        ("vgg16", {"norm": "layer"}, "batch"),
        ("vgg16", {"activation": "swish"}, "leaky_relu"),
        ("vgg16", {"init": "foo"}, "orthogonal"),
        ("vgg16", {"width": 0}, "width"),
        ("vgg16", {"width": -1.0}, "width"),
        ("vgg16", {"width": float("nan")}, "width"),
        ("vgg16", {"num_classes": 0}, "num_classes"),
        ("vgg16", {"in_channels": 0}, "in_channels"),
        ("vgg16", {"depth": 16}, "vgg_deep"),
        ("vgg16", {"stem": "cifar"}, "resnet18"),
        ("mlp", {"stem": "cifar"}, "resnet"),
        ("resnet18", {"depth": 18}, "resnet"),
        ("resnet18", {"stem": "tiny"}, "imagenet"),
        ("vgg_deep", {"depth": 4}, ">= 5"),
        ("resnet", {"depth": 21}, "6n+2"),
        ("plain", {"depth": 2}, "6n+2"),
        ("mlp", {"depth": 0}, ">= 1"),
        ("plain_stack", {"depth": 1}, ">= 2"),
        ("residual_stack", {"depth": 2.5}, ">= 2"),
    ],
)
def test_invalid_options_raise_input_error_naming_the_fix(
    name: str, options: dict[str, object], must_mention: str
) -> None:
    with pytest.raises(InputError) as error:
        build_model(name, **options)
    assert must_mention in str(error.value)


# --- family records: defaults, options, residual twins -------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_registry_defaults_are_what_the_builder_uses(name: str) -> None:
    family = model_family(name)
    info = small_model(name, init="default").gradprobe_info
    assert info["norm"] == family.defaults["norm"] == family_default(name, "norm")
    assert info["activation"] == family.defaults["activation"]
    assert info["residual"] == bool(family.defaults.get("residual", False))


def test_residual_is_an_option_and_the_plain_names_are_its_twins() -> None:
    torch.manual_seed(0)
    resnet_plain = build_model("resnet", depth=8, width=SMALL, residual=False)
    torch.manual_seed(0)
    plain = build_model("plain", depth=8, width=SMALL)
    assert resnet_plain.gradprobe_info["residual"] is False
    assert resnet_plain.state_dict().keys() == plain.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(value, resnet_plain.state_dict()[key]), key
    assert build_model("plain_stack", depth=3, residual=True).gradprobe_info["residual"] is True
    with pytest.raises(InputError, match="no residual option"):
        build_model("vgg16", residual=True)
    with pytest.raises(InputError, match="true or false"):
        build_model("resnet", residual="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "options", "twin"),
    [
        ("resnet", {"depth": 20}, ("plain", {"depth": 20})),
        ("plain", {"depth": 20, "norm": "none"}, ("resnet", {"depth": 20, "norm": "none"})),
        ("resnet18", {}, ("plain18", {})),
        ("plain34", {}, ("resnet34", {})),
        ("residual_stack", {"depth": 8}, ("plain_stack", {"depth": 8})),
        ("resnet", {"residual": False, "depth": 8}, ("resnet", {"depth": 8})),
        ("vgg16", {}, None),
        ("mlp", {"depth": 3}, None),
    ],
)
def test_residual_twin(
    name: str, options: dict[str, object], twin: tuple[str, dict[str, object]] | None
) -> None:
    assert residual_twin(name, options) == twin


def test_residual_variant_and_family_errors() -> None:
    assert residual_variant("resnet", False) == "plain"
    assert residual_variant("plain", True) == "resnet"
    assert residual_variant("plain_stack", False) == "plain_stack"
    assert set(models_with_option("residual")) == {
        "resnet", "plain", "resnet18", "plain18", "resnet34", "plain34",
        "plain_stack", "residual_stack",
    }
    with pytest.raises(InputError, match=r"no residual option.*resnet18"):
        residual_variant("vgg_deep", True)
    with pytest.raises(InputError, match=r"unknown model 'vgg17'.*vgg16"):
        model_family("vgg17")
    with pytest.raises(InputError, match="no stem option"):
        family_default("mlp", "stem")
    with pytest.raises(ValueError, match="unknown default"):
        register_model("test_only_bad", defaults={"colour": "red"})
