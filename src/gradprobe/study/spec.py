"""The study spec: what a YAML file (or a built-in study) declares, validated.

A spec names shared settings (data, train, probe, model defaults), a list of runs, an optional
comparison of some of them (the assignment's Step 4) and named experiments, each a base run and a
grid of axes expanded into runs with readable names. `resolve` merges a preset under the spec and
returns every run as a full `RunConfig`; identical runs are trained once and shared.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)

from gradprobe.config import (
    SEED_LIMIT,
    DataConfig,
    ModelConfig,
    ProbeConfig,
    RunConfig,
    TrainConfig,
)
from gradprobe.errors import InputError
from gradprobe.util.paths import safe_name
from gradprobe.util.safe_yaml import check_document, load_yaml

# An axis may sweep any model option, any training option, the model name, or `residual`
# (which swaps a residual model for its plain twin: He et al. 2016's plain vs residual nets).
MODEL_AXES = tuple(name for name in ModelConfig.model_fields if name != "name")
TRAIN_AXES = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "scheduler",
              "seed")
# A replicate's name: the configuration's name plus this suffix (`vgg_deep,seed=1`). A seed
# varies TrainConfig.seed only (initialisation and batch order); DataConfig.seed, the split, stays.
SEED_SUFFIX = ",seed={seed}"
# Runs one study may declare (runs and experiment grids, times the seeds). Counted before a grid
# is expanded: 6 axes of 10 values once took 3.4 GB and two minutes before printing anything.
MAX_RUNS = 10_000
# An axis value becomes part of a run's folder name: a scalar, never a list or a mapping.
AXIS_VALUE_TYPES = (bool, int, float, str, type(None))
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT, strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _overrides(config: type[BaseModel], exclude: tuple[str, ...] = ()) -> type[_Strict]:
    """A spec section: any subset of `config`'s fields, each typed and constrained as there.

    Validating a section on its own reports a typo or a bad value under the section's own name
    (`train.optimizer`), not under the first run that happens to use it. An unwritten field stays
    unset (`model_dump(exclude_unset=True)`), so presets and family defaults still apply.
    """
    fields: dict[str, Any] = {}
    for name, info in config.model_fields.items():
        if name in exclude:
            continue
        annotation = (Annotated[(info.annotation, *info.metadata)] if info.metadata
                      else info.annotation)
        # The None default is never validated or dumped: it only marks the field as unwritten.
        fields[name] = (annotation, Field(None, description=info.description))
    return create_model(f"{config.__name__}Section", __base__=_Strict, **fields)


DataSection = _overrides(DataConfig)
TrainSection = _overrides(TrainConfig)
ProbeSection = _overrides(ProbeConfig)
ModelSection = _overrides(ModelConfig, exclude=("name",))


def _written(section: BaseModel) -> dict[str, Any]:
    """The fields a spec section sets."""
    return section.model_dump(exclude_unset=True)


class RunSpec(_Strict):
    """One run: a model name plus any model or training option overrides."""

    name: str | None = None  # run directory name; default: the model name
    model: str  # registry name (see `gradprobe models`)
    options: ModelSection = Field(default_factory=ModelSection)  # depth, norm, init, ...
    train: TrainSection = Field(default_factory=TrainSection)  # lr, optimizer, ...


class ComparisonSpec(_Strict):
    """The assignment's Step 4: several models trained under one setup."""

    title: str = "Model comparison"
    runs: list[str]  # names of runs in `runs`


class ExperimentSpec(_Strict):
    """A question answered by a grid of variants of one base run."""

    name: str  # short, used in run names: "<name>.<axis>=<value>,..."
    title: str = ""
    question: str = ""
    base: RunSpec
    axes: dict[str, list[Any]]

    @field_validator("axes")
    @classmethod
    def _known_axes(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        allowed = ("model", "residual", *MODEL_AXES, *TRAIN_AXES)
        for axis, values in axes.items():
            if axis not in allowed:
                raise ValueError(f"unknown axis {axis!r}; allowed axes: {', '.join(allowed)}")
            if not values:
                raise ValueError(f"axis {axis!r} has no values")
            for position, value in enumerate(values):
                if not isinstance(value, AXIS_VALUE_TYPES):  # never str() it: it may be huge
                    raise ValueError(f"axis {axis!r} value {position + 1} is a "
                                     f"{type(value).__name__}; each value must be one number, "
                                     "string, true/false or null")
        return axes


def _distinct(seeds: list[int] | None) -> list[int] | None:
    if seeds is not None and len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return seeds


class StudySpec(_Strict):
    """A whole study, as written in YAML."""

    name: str
    title: str = ""
    description: str = ""
    data: DataSection = Field(default_factory=DataSection)  # DataConfig fields
    train: TrainSection = Field(default_factory=TrainSection)  # TrainConfig fields
    probe: ProbeSection = Field(default_factory=ProbeSection)  # ProbeConfig fields
    model: ModelSection = Field(default_factory=ModelSection)  # model option defaults (width)
    # replicates: every run is trained once per seed (TrainConfig.seed); None: the preset's
    seeds: list[Seed] | None = Field(None, min_length=1)
    runs: list[RunSpec] = Field(default_factory=list)
    comparison: ComparisonSpec | None = None
    experiments: list[ExperimentSpec] = Field(default_factory=list)

    _distinct_seeds = field_validator("seeds")(_distinct)


@dataclass(frozen=True)
class ResolvedRun:
    name: str
    config: RunConfig
    configuration: str = ""  # the name shared by the replicates of one configuration


@dataclass
class ResolvedStudy:
    """Every run as a full config, plus the groups the report draws."""

    spec: StudySpec
    preset: str
    runs: list[ResolvedRun]
    comparison: dict[str, Any] | None
    experiments: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] | None = None  # replicate seeds (None: one run per configuration)

    def to_yaml_dict(self) -> dict[str, Any]:
        """The resolved spec written to `study.yaml`."""
        first = self.runs[0].config if self.runs else None
        return {
            "name": self.spec.name, "title": self.spec.title,
            "description": self.spec.description, "preset": self.preset,
            "data": first.data.model_dump(mode="json") if first else {},
            "train": first.train.model_dump(mode="json") if first else {},
            "probe": first.probe.model_dump(mode="json") if first else {},
            "seeds": self.seeds,
            "comparison": self.comparison, "experiments": self.experiments,
            "runs": [{"name": run.name, "configuration": run.configuration,
                      **run.config.model_dump(mode="json")} for run in self.runs],
        }


def load_spec(source: str | Path | dict[str, Any]) -> StudySpec:
    """Parse and validate a spec from a YAML file path or a dict."""
    if isinstance(source, dict):
        raw, origin = source, "spec"
        check_document(raw, origin)  # bounded before pydantic (or an error message) walks it
    else:
        path = Path(source)
        if path.exists() and not path.is_file():  # a folder, or a pipe that would block
            raise InputError(f"study spec {path} is not a regular file; pass a YAML file or a "
                             "built-in study name (see `gradprobe study --help`).")
        if not path.is_file():
            raise InputError(f"study spec {path} does not exist; pass a YAML file or a built-in "
                             "study name (see `gradprobe study --help`).")
        try:
            raw = load_yaml(path.read_bytes().decode("utf-8"), str(path))
        except UnicodeDecodeError as error:
            raise InputError(f"{path} is not a UTF-8 text file ({error.reason} at byte "
                             f"{error.start}); pass a YAML study spec.") from None
        except yaml.YAMLError as error:
            raise InputError(f"{path} is not valid YAML: {error}") from None
        except OSError as error:
            raise InputError(f"{path} cannot be read ({error.strerror}).") from None
        origin = str(path)
        if not isinstance(raw, dict):
            raise InputError(f"{path} must hold a YAML mapping with at least `name` and `runs` "
                             "or `experiments`.")
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as error:
        raise InputError(describe_error(error, origin)) from None


def describe_error(error: ValidationError, origin: str, what: str = "study spec") -> str:
    """A validation error as one line per problem, each under its key path in the spec."""
    lines = []
    for problem in error.errors():
        path = _format_path(problem["loc"])
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against the documented keys)"
        lines.append(f"  {path}: {message}")
    where = f" ({origin})" if origin else ""
    return f"invalid {what}{where}:\n" + "\n".join(lines)


def _format_path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def resolve(spec: StudySpec, preset: dict[str, dict[str, Any]], preset_name: str,
            dataset: str | None = None, data_root: str | None = None) -> ResolvedStudy:
    """Merge the preset under the spec and expand experiments into runs.

    Precedence, lowest first: preset, spec's shared sections, a run's own overrides, an
    experiment axis value. `dataset` and `data_root` (the CLI's --dataset and --data-root)
    override the spec's.
    """
    from gradprobe.models import family_default, list_models

    known_models = set(list_models())
    data = {**preset.get("data", {}), **_written(spec.data)}
    if dataset is not None:
        data["dataset"] = dataset
    if data_root is not None:
        data["data_root"] = data_root
    train = {**preset.get("train", {}), **_written(spec.train)}
    probe = {**preset.get("probe", {}), **_written(spec.probe)}
    model_defaults = {**preset.get("model", {}), **_written(spec.model)}

    seeds = _seeds(spec, preset)
    _check_run_count(spec, seeds)
    by_config: dict[RunConfig, str] = {}
    runs: list[ResolvedRun] = []
    taken: set[str] = set()  # run names so far: one lookup per run keeps resolving linear

    def add_replicates(name: str, run: RunSpec, where: str) -> list[str]:
        """`run` once per seed (one name each, `name` itself with one seed or none)."""
        if seeds is None:
            return [add(name, run, where)]
        names = []
        for seed in seeds:
            seeded = run.model_copy(update={"train": TrainSection(
                **{**_written(run.train), "seed": seed})})
            replicate = name if len(seeds) == 1 else name + SEED_SUFFIX.format(seed=seed)
            names.append(add(replicate, seeded, where, configuration=name))
        return names

    def add(name: str, run: RunSpec, where: str, configuration: str | None = None) -> str:
        safe_name(name, f"{where}: the run name")  # it becomes runs/<name>/: no escape
        if run.model not in known_models:
            raise InputError(f"{where}.model: unknown model {run.model!r}; known models: "
                             f"{', '.join(sorted(known_models))}.")
        try:
            model = ModelConfig(name=run.model, **{**model_defaults, **_written(run.options)})
            if model.norm is None:  # explicit, so identical runs are recognised as such
                model = model.model_copy(update={"norm": family_default(run.model, "norm")})
            config = RunConfig(
                model=model,
                data=DataConfig(**data), train=TrainConfig(**{**train, **_written(run.train)}),
                probe=ProbeConfig(**probe),
            )
        except ValidationError as error:
            raise InputError(describe_error(error, where)) from None
        if config in by_config:  # the same run asked for twice: train it once, share it
            return by_config[config]
        if name in taken:
            raise InputError(f"{where}: two different runs are named {name!r}; give each run a "
                             "unique `name`.")
        by_config[config] = name
        taken.add(name)
        runs.append(ResolvedRun(name, config, configuration or name))
        return name

    run_names: dict[str, list[str]] = {}
    for index, run in enumerate(spec.runs):
        declared = run.name or run.model
        run_names[declared] = add_replicates(declared, run, f"runs[{index}]")

    comparison = None
    if spec.comparison is not None:
        missing = [name for name in spec.comparison.runs if name not in run_names]
        if missing:
            raise InputError(f"comparison.runs: {missing} are not names of runs; known runs: "
                             f"{', '.join(run_names)}.")
        comparison = {"title": spec.comparison.title,
                      "runs": [replicate for name in spec.comparison.runs
                               for replicate in run_names[name]]}

    experiments = []
    for index, experiment in enumerate(spec.experiments):
        variants = _expand(experiment, f"experiments[{index}]")
        names, labels = [], {}
        if seeds is not None and "seed" in experiment.axes:
            raise InputError(f"experiments[{index}].axes.seed: the spec also declares `seeds`; "
                             "declare replicates once, either as top-level `seeds` or as a "
                             "`seed` axis.")
        for label, run in variants:
            for name in add_replicates(f"{experiment.name}.{label}", run,
                                       f"experiments[{index}]"):
                names.append(name)
                labels[name] = label
        experiments.append({"name": experiment.name, "title": experiment.title or experiment.name,
                            "question": experiment.question, "axes": experiment.axes,
                            "runs": names, "labels": labels})
    if not runs:
        raise InputError("the study declares no runs: add `runs` or `experiments` to the spec.")
    return ResolvedStudy(spec, preset_name, runs, comparison, experiments, seeds)


def _check_run_count(spec: StudySpec, seeds: list[int] | None) -> None:
    """Refuse a study of more than MAX_RUNS runs before any grid is expanded."""
    per_config = len(seeds) if seeds else 1
    grids = [math.prod(len(values) for values in experiment.axes.values())
             for experiment in spec.experiments]
    total = (len(spec.runs) + sum(grids)) * per_config
    if total > MAX_RUNS:
        biggest = max(grids, default=0)
        raise InputError(
            f"the study declares {total:,} runs ({len(spec.runs)} runs and experiment grids of "
            f"{', '.join(f'{size:,}' for size in grids) or 'none'}, times {per_config} seed(s)); "
            f"gradprobe's limit is {MAX_RUNS:,} runs per study. Fix: sweep fewer axis values "
            f"or seeds (the largest grid has {biggest:,} runs), or split the study."
        )


def _seeds(spec: StudySpec, preset: dict[str, dict[str, Any]]) -> list[int] | None:
    """The replicate seeds: the spec's `seeds`, else the preset's, else None (no replicates:
    each run keeps the seed of its train section)."""
    if spec.seeds is not None:
        return list(spec.seeds)
    from_preset = preset.get("study", {}).get("seeds")
    return list(from_preset) if from_preset else None


def _expand(experiment: ExperimentSpec, where: str) -> list[tuple[str, RunSpec]]:
    """The grid of an experiment: (label, run) for each combination of axis values."""
    axes = list(experiment.axes)
    variants = []
    for combination in itertools.product(*(experiment.axes[axis] for axis in axes)):
        values = dict(zip(axes, combination, strict=True))
        model = values.get("model", experiment.base.model)
        if "residual" in values:
            model = _residual_twin(model, values["residual"], f"{where}.axes.residual")
        options = {**_written(experiment.base.options),
                   **{k: v for k, v in values.items() if k in MODEL_AXES and k != "residual"}}
        train = {**_written(experiment.base.train),
                 **{k: v for k, v in values.items() if k in TRAIN_AXES}}
        label = ",".join(f"{axis}={_label(value)}" for axis, value in values.items())
        try:  # an axis value is checked like the same key written in the base run
            variant = RunSpec(model=model, options=options, train=train)
        except ValidationError as error:
            raise InputError(describe_error(error, f"{where}.axes")) from None
        variants.append((label, variant))
    return variants


def _residual_twin(model: str, residual: Any, where: str) -> str:
    from gradprobe.models import residual_variant

    if not isinstance(residual, bool):
        raise InputError(f"{where}: values must be true or false, got {residual!r}.")
    try:
        return residual_variant(model, residual)
    except InputError as error:
        raise InputError(f"{where}: the `residual` axis needs a model with a plain twin; "
                         f"{error}.") from None


def _label(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
