"""The `gradprobe` command line: parse, call the library, print. No logic lives only here.

Exit codes: 0 success (a diverged run is a result), 2 bad input, 1 anything else; `study`: 2 for
bad input found before any run started, 1 when a run failed; 130 after SIGINT (Ctrl-C), 143 after
SIGTERM, with every run left resumable (README.md, "Exit codes").
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from gradprobe import interrupts
from gradprobe._version import __version__
from gradprobe.config import (
    Activation,
    DataConfig,
    ExecutionConfig,
    Init,
    ModelConfig,
    ProbeConfig,
    RunConfig,
    TrainConfig,
    ZooConfig,
)
from gradprobe.errors import InputError
from gradprobe.metrics import default_metrics, gradient_size_metrics, list_metrics
from gradprobe.record import REPORT_HTML, RUNS_DIR, STATUS_FILE, STUDY_FILE, RunState
from gradprobe.scan.config import DEFAULT_SCAN_DIR, ScanConfig
from gradprobe.study.presets import (
    BUILTIN_STUDIES,
    DEFAULT_STUDY,
    DEFAULT_STUDY_DIR,
    PRESETS,
    default_jobs,
    default_preset,
    get_preset,
)
from gradprobe.util.atomic import NoSpaceError
from gradprobe.util.paths import prepare_output_dir

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away

# "section.field" -> its flag, to name the flag in a validation error.
_FLAGS: dict[str, str] = {}
PRESET_HELP = "default: full with CUDA, else quick (see README, \"The built-in study\")"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        with interrupts.handling():  # SIGINT and SIGTERM: Interrupted, below
            return args.handler(args)
    except InputError as error:
        print(f"gradprobe {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as error:
        problems = "; ".join(f"{_flag_of(e['loc'])}: {e['msg']}" for e in error.errors())
        print(f"gradprobe {args.command}: error: invalid option: {problems}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NoSpaceError as error:  # a full disk: one message with the path and space, exit 1
        print(f"gradprobe {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt as interrupt:
        code = _interrupted(args.command, interrupt)
        if argv is None:  # the program itself (not a call from Python): exit now
            # Everything is recorded and every file was written atomically; the interpreter's
            # teardown (torch's: 1.5-2.5 s on a loaded 2-core machine) would only delay the stop.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except BrokenPipeError:
        return _pipe_closed()


def parse_args(parser: argparse.ArgumentParser,
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`parser.parse_args`, but an unknown flag is reported by its subcommand's parser (its
    usage, not the top-level one) with the closest flag it has (`--widht`: did you mean
    `--width`?)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = getattr(args, "command", None)
        sub = _subparsers(parser).get(command, parser) if command else parser
        hint = ""
        flags = [flag for action in sub._actions for flag in action.option_strings]
        close = difflib.get_close_matches(unknown[0].split("=")[0], flags, n=1)
        if close:
            hint = f" (did you mean {close[0]}?)"
        sub.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's own parser, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _pipe_closed() -> int:
    """The reader of our output went away (`gradprobe models | head -1`): stop quietly. stdout
    goes to /dev/null, so the interpreter's final flush cannot raise again (Python's docs,
    "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE_CLOSED


def _interrupted(command: str, interrupt: KeyboardInterrupt) -> int:
    """Say what an interrupt left and how to go on; exit 128 + the signal (130: SIGINT)."""
    from gradprobe.study.executors import StudyInterrupted

    signum = interrupts.signum_of(interrupt)
    what = f"gradprobe {command}: interrupted by {interrupts.signal_name(signum)}"
    if command == "scan":
        print(f"{what}; a scan does not resume: the same command starts it over.",
              file=sys.stderr)
    elif isinstance(interrupt, StudyInterrupted):
        counts: dict[str, int] = {}
        for outcome in interrupt.outcomes:
            state = "not started" if not outcome.started else str(outcome.state)
            counts[state] = counts.get(state, 0) + 1
        listing = ", ".join(f"{count} {state}" for state, count in counts.items())
        print(f"{what} ({listing}); no report was written. Run the same command again to "
              "resume: finished runs are kept, interrupted ones resume from their last "
              "checkpoint.", file=sys.stderr)
    elif command in ("train", "study"):
        print(f"{what}; run the same command again to resume from the last checkpoint.",
              file=sys.stderr)
    else:
        print(f"{what}.", file=sys.stderr)
    return 128 + signum


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradprobe",
        description="A laboratory for gradient flow in deep networks.",
    )
    parser.add_argument("--version", action="version", version=f"gradprobe {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = commands.add_parser("models", help="list the model zoo, or summarise one model")
    models.add_argument("name", nargs="?", help="a model name: print its per-layer summary")
    add_config_flags(models, ModelConfig, "model", exclude=("name",))
    add_config_flags(models, ZooConfig, "zoo")
    models.set_defaults(handler=_models)

    datasets = commands.add_parser("datasets", help="list the dataset kinds")
    datasets.set_defaults(handler=_datasets)

    train = commands.add_parser(
        "train", help="train one run into a run directory",
        description="Train one run into a run directory. A preset (the same as `gradprobe "
                    "study`'s) sets the sizes; every flag given overrides it.")
    train.add_argument("--out", required=True, type=Path, help="run directory")
    train.add_argument("--preset", choices=tuple(PRESETS), default=None, help=PRESET_HELP)
    add_config_flags(train, ModelConfig, "model", flags={"name": "--model"},
                     presets=_preset_sections("model"))
    add_config_flags(train, DataConfig, "data", flags={"seed": "--data-seed"},
                     presets=_preset_sections("data"))
    add_config_flags(train, TrainConfig, "train", presets=_preset_sections("train"))
    add_config_flags(train, ProbeConfig, "probe", choices={"metrics": list_metrics()},
                     presets=_preset_sections("probe"))
    train.add_argument("--quiet", action="store_true", help="print nothing but errors")
    train.add_argument("--force", action="store_true",
                       help="discard what --out holds and train from scratch")
    train.set_defaults(handler=_train)

    study = commands.add_parser("study", help="run a study and write its report")
    study.add_argument("spec", nargs="?", default=None,
                       help=f"a YAML spec or a built-in study: {', '.join(BUILTIN_STUDIES)} "
                            f"(default: {DEFAULT_STUDY})")
    study.add_argument("--out", type=Path, default=DEFAULT_STUDY_DIR,
                       help=f"study directory (default: {DEFAULT_STUDY_DIR})")
    study.add_argument("--preset", choices=tuple(PRESETS), default=None,
                       help="sizes merged under the spec; " + PRESET_HELP)
    study.add_argument("--dataset", default=None,
                       help="replaces the spec's dataset: "
                            f"{DataConfig.model_fields['dataset'].description}")
    study.add_argument("--data-root", default=None,
                       help="replaces the spec's data_root: "
                            f"{DataConfig.model_fields['data_root'].description}")
    add_config_flags(study, ExecutionConfig, "execution",
                     defaults={"jobs": f"one per CPU core ({default_jobs('quick')} here) with "
                                       "--preset quick and --executor local, else 1"})
    study.add_argument("--force", action="store_true",
                       help="train every run again from scratch, finished ones included")
    study.add_argument("--quiet", action="store_true", help="print nothing but the result")
    study.set_defaults(handler=_study)

    report = commands.add_parser("report", help="(re)write the report of a study directory")
    report.add_argument("dir", type=Path)
    report.add_argument("--metric", default=default_metrics()[0],
                        choices=gradient_size_metrics(),
                        help=f"the gradient-size metric the report fits and draws "
                             f"(default: {default_metrics()[0]})")
    report.set_defaults(handler=_report)

    scan = commands.add_parser(
        "scan", help="gradient flow at initialisation across depths",
        description="Measure per-layer gradient norms of untrained conv stacks across depths "
                    "and architectures, beside the mean-field prediction (--theory: the "
                    "prediction alone, for any zoo model).")
    scan.add_argument("--out", type=Path, default=DEFAULT_SCAN_DIR,
                      help=f"scan directory (default: {DEFAULT_SCAN_DIR})")
    scan.add_argument("--architectures", "--models", nargs="+", default=None,
                      metavar="NAME", help=_scan_help("architectures", "models"))
    scan.add_argument("--depths", nargs="+", type=int, default=None, metavar="DEPTH",
                      help=_scan_help("depths", "depths"))
    scan.add_argument("--activations", nargs="+", default=None, choices=get_args(Activation),
                      help=_scan_help("activations", "activations"))
    scan.add_argument("--inits", nargs="+", default=None, choices=get_args(Init),
                      help=_scan_help("inits", "inits"))
    scan.add_argument("--seeds", type=int, default=None, metavar="N",
                      help=_help(ScanConfig, "seeds") + "; not with --theory")
    scan.add_argument("--theory", action="store_true",
                      help="predict the profile at initialisation from theory alone (no run)")
    scan.add_argument("--quiet", action="store_true", help="print nothing but the result")
    scan.set_defaults(handler=_scan)
    return parser


def add_config_flags(parser: argparse.ArgumentParser, config: type[BaseModel], section: str, *,
                     exclude: Sequence[str] = (), flags: dict[str, str] | None = None,
                     choices: dict[str, Sequence[str]] | None = None,
                     defaults: dict[str, str] | None = None,
                     presets: dict[str, dict[str, Any]] | None = None) -> None:
    """One flag per field of `config` (`--image-size` for `image_size`), typed and described by
    the field. An unused flag stays out of the namespace, so the model's own default applies
    (or the preset's: `presets` maps each preset to its values of this section; `defaults`
    replaces a field's stated default where the CLI chooses it)."""
    for name, info in config.model_fields.items():
        if name in exclude:
            continue
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        dest = f"{section}.{name}"
        _FLAGS[dest] = flag
        options: dict[str, Any] = {"dest": dest, "help": _help(
            config, name, default=(defaults or {}).get(name), presets=presets)}
        if info.is_required():
            options["required"] = True
        else:
            options["default"] = argparse.SUPPRESS
        options.update(_value_options(info))
        if "action" not in options and "choices" not in options:
            options["metavar"] = name.upper()
        if choices and name in choices:  # a long list: name it once in the help, not the usage
            options["choices"] = tuple(choices[name])
            options["metavar"] = name.upper()
            options["help"] += f"; any of: {', '.join(choices[name])}"
        parser.add_argument(flag, **options)


def _value_options(info: FieldInfo) -> dict[str, Any]:
    """How argparse reads a field's value: a switch, a choice, a number, or a list."""
    kind = info.annotation
    if get_origin(kind) in (Union, types.UnionType):  # X | None: None is the unset default
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    if kind is bool and info.default is None:  # unset (the default's default), true or false
        return {"type": _true_or_false}
    if kind is bool:
        if info.default is not False:
            raise TypeError("a boolean config field becomes a switch: its default must be False")
        return {"action": "store_true"}
    if get_origin(kind) is Literal:
        return {"choices": get_args(kind)}
    if get_origin(kind) is tuple:
        items = get_args(kind)
        nargs: int | str = "+" if items[-1] is Ellipsis else len(items)
        return {"nargs": nargs, "type": items[0]}
    return {"type": kind}


def _true_or_false(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() == "true"


def _help(config: type[BaseModel], name: str, *, default: str | None = None,
          presets: dict[str, dict[str, Any]] | None = None) -> str:
    """The field's description and its default: `default` where given, else the preset's value
    under each preset when any preset sets the field, else the config's own default."""
    info = config.model_fields[name]
    text = info.description or ""
    if info.is_required():
        return text.replace("%", "%%")
    # as the field holds it: a preset's `1` is the float field's 1.0
    field_type = TypeAdapter(info.annotation)
    per_preset = {preset: field_type.validate_python(values.get(name, info.default))
                  for preset, values in (presets or {}).items()}
    if default is None and len(set(map(_shown, per_preset.values()))) > 1:
        default = ", ".join(f"{preset} {_shown(value)}" for preset, value in per_preset.items())
        text += f" (default per --preset: {default})"
    elif default is not None:
        text += f" (default: {default})"
    elif per_preset and next(iter(per_preset.values())) is not None:  # every preset's value
        text += f" (default: {_shown(next(iter(per_preset.values())))})"
    elif info.default is not None and info.default is not False:
        text += f" (default: {_shown(info.default)})"
    return text.replace("%", "%%")  # argparse %-formats help strings


def _shown(value: Any) -> str:
    """A default as a user types it: lists space-separated, None as `none`."""
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def _preset_sections(section: str) -> dict[str, dict[str, Any]]:
    """Each preset's values of one config section (what `train --preset` merges under flags)."""
    return {name: dict(preset.get(section, {})) for name, preset in PRESETS.items()}


def _scan_help(field: str, theory_field: str) -> str:
    """A scan flag's help: the scan's field, and what it means with --theory."""
    from gradprobe.scan.config import TheoryConfig

    theory = TheoryConfig.model_fields[theory_field]
    shown = ("each family's" if theory.default is None
             else _shown(theory.default))
    return (_help(ScanConfig, field) + f"; with --theory: {theory.description} "
            f"(default: {shown})").replace("%%", "%").replace("%", "%%")


def config_values(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The fields of `section` given on the command line (lists as tuples, as the models hold)."""
    prefix = f"{section}."
    return {key[len(prefix):]: tuple(value) if isinstance(value, list) else value
            for key, value in vars(args).items() if key.startswith(prefix)}


def run_config(args: argparse.Namespace) -> RunConfig:
    """The `RunConfig` that `gradprobe train`'s flags describe: each flag given, over the
    preset's values (`--preset`, default as `study`'s), over the config models' defaults."""
    preset = get_preset(train_preset(args))
    return RunConfig.model_validate(
        {section: {**preset.get(section, {}), **config_values(args, section)}
         for section in ("model", "data", "train", "probe")})


def train_preset(args: argparse.Namespace) -> str:
    """The preset `gradprobe train` uses: --preset, else study's default (quick; full on CUDA)."""
    return args.preset or default_preset()


def _flag_of(loc: tuple[Any, ...]) -> str:
    """`--image-size` for the error location ("data", "image_size"), else the dotted path."""
    dotted = ".".join(map(str, loc))
    return _FLAGS.get(".".join(map(str, loc[:2])), dotted)


def _progress(quiet: bool):
    from gradprobe.progress import ConsoleProgress, NullProgress

    return NullProgress() if quiet else ConsoleProgress()


def _models(args: argparse.Namespace) -> int:
    from gradprobe.models import build_model, count_parameters, list_models, model_summary

    model = ModelConfig(name=args.name or "", **config_values(args, "model"))
    zoo = ZooConfig(**config_values(args, "zoo"))
    if args.name:
        from gradprobe.train.preflight import check_run_fits

        # bounded before anything is built: a depth of 10^8 would take minutes and gigabytes
        check_run_fits(args.name, model.builder_options(), num_classes=zoo.num_classes,
                       in_channels=3, image_size=zoo.image_size, batch_size=1)
        built = build_model(args.name, num_classes=zoo.num_classes, **model.builder_options())
        print(model_summary(built, input_size=(1, 3, zoo.image_size, zoo.image_size)))
        return EXIT_OK
    print(f"{'model':<16}{'parameters':>14}  (num_classes={zoo.num_classes}, "
          f"width={model.width})")
    # Depth, stem and residual are options of some families only: each family uses its own.
    family_options = {k: v for k, v in model.builder_options().items()
                      if k not in ("stem", "depth", "residual")}
    import torch

    for name in list_models():
        with torch.device("meta"):  # counted, never allocated: any --width is free to list
            built = build_model(name, num_classes=zoo.num_classes, **family_options)
        print(f"{name:<16}{count_parameters(built):>14,}")
    return EXIT_OK


def _datasets(args: argparse.Namespace) -> int:
    from gradprobe.data import list_datasets

    for kind, description in list_datasets():
        print(f"{kind:<16}{description}")
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from gradprobe.models import list_models
    from gradprobe.train import train

    config = run_config(args)
    if config.model.name not in list_models():
        raise InputError(f"unknown model {config.model.name!r}; known models: "
                         f"{', '.join(list_models())}.")
    progress = _progress(args.quiet)
    progress.message(_describe_run(config, train_preset(args)))
    result = train(config, args.out, force=args.force, progress=progress)
    if result.state == RunState.DIVERGED and args.quiet:  # else the run's last line said it
        print(f"{args.out}: diverged at step {result.summary['diverged_step']} "
              f"(a result, not a crash: see {STATUS_FILE})")
    return EXIT_OK


def _describe_run(config: RunConfig, preset: str) -> str:
    """What `train` is about to train, and from which preset its unset flags came."""
    data, train = config.data, config.train
    other = "" if preset == "full" else "; --preset full is the assignment's setup"
    return (f"preset {preset}: {config.model.name} at width {config.model.width:g} on "
            f"{data.dataset} at {data.image_size}x{data.image_size}, {train.epochs} epochs of "
            f"batch {train.batch_size}, {train.optimizer} lr {train.lr:g} (flags given override "
            f"the preset{other})")


def _study(args: argparse.Namespace) -> int:
    """Exit 2: bad input found before any run started; 1: a run failed or could not run (each
    named, with where its traceback is); 0: every run completed or diverged (a result)."""
    from gradprobe.study import run_study

    execution = config_values(args, "execution")
    if "jobs" not in execution and execution.get("executor", "local") == "local":
        execution["jobs"] = default_jobs(args.preset or default_preset())  # quick: 1 per core
    result = run_study(args.spec, args.out, preset=args.preset, dataset=args.dataset,
                       data_root=args.data_root, force=args.force,
                       progress=_progress(args.quiet), **execution)
    print(_format_rows(result.rows))
    print(f"report: {result.report.get('html', result.study_dir / REPORT_HTML)}")
    if not result.unfinished:
        return EXIT_OK
    for outcome in result.unfinished:
        run_dir = result.study_dir / RUNS_DIR / outcome.name
        where = (f"another process is training it; rerun when it is done ({run_dir})"
                 if outcome.state == RunState.RUNNING
                 else f"traceback in {run_dir / STATUS_FILE}"
                 if (run_dir / STATUS_FILE).is_file() else "it never started")
        print(f"gradprobe study: run {outcome.name!r} {outcome.state}: {outcome.message} "
              f"[{where}]", file=sys.stderr)
    print(f"gradprobe study: {len(result.unfinished)} of {len(result.outcomes)} runs did not "
          "finish; fix the cause and run the same command again (finished runs are kept).",
          file=sys.stderr)
    return EXIT_FAILURE


def _format_rows(rows: list[dict]) -> str:
    width = max([len("run"), *(len(row["run"]) for row in rows)]) + 2
    header = (f"{'run':<{width}}{'model':<14}{'state':<11}{'best val':>9}{'test':>8}"
              f"{'first/last':>12}  verdict")
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['run']:<{width}}{row['model'][:13]:<14}{row['state']:<11}"
            f"{_fmt(row.get('best_val_acc'), '.3f'):>9}{_fmt(row.get('test_acc'), '.3f'):>8}"
            f"{_fmt(row.get('first_to_last_ratio'), '.2e'):>12}  {row.get('verdict') or '-'}"
        )
    return "\n".join(lines)


def _fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _report(args: argparse.Namespace) -> int:
    from gradprobe.analysis import write_report
    from gradprobe.record import CONFIG_FILE

    if not any(((args.dir / STUDY_FILE).is_file(), (args.dir / RUNS_DIR).is_dir(),
                (args.dir / CONFIG_FILE).is_file())):
        raise InputError(f"{args.dir} is not a study directory (no {STUDY_FILE} or {RUNS_DIR}/) "
                         f"nor a run directory (no {CONFIG_FILE}); pass the --out of "
                         "`gradprobe study` or of `gradprobe train`.")
    prepare_output_dir(args.dir, what="study or run directory")  # the report is written into it
    paths = write_report(args.dir, metric=args.metric)
    for kind, path in paths.items():
        if kind in ("html", "md"):
            print(f"{kind}: {path}")
    return EXIT_OK


def _scan(args: argparse.Namespace) -> int:
    progress = _progress(args.quiet)
    created = not args.out.exists()  # _scan_into creates it once the options are valid
    try:
        return _scan_into(args, progress)
    except KeyboardInterrupt:
        if created and args.out.is_dir() and not any(args.out.iterdir()):
            args.out.rmdir()  # nothing written yet: leave no empty --out behind
        raise


def _scan_into(args: argparse.Namespace, progress: Any) -> int:
    from gradprobe.scan import ScanConfig, TheoryConfig, run_scan, run_theory

    if args.theory:
        options = {"models": args.architectures, "depths": args.depths,
                   "activations": args.activations, "inits": args.inits}
        theory = TheoryConfig(**{k: v for k, v in options.items() if v is not None})
        prepare_output_dir(args.out)  # only once the options are valid: a refusal writes nothing
        run_theory(theory, args.out, progress=progress)
        print(f"theory written to {args.out}")
        return EXIT_OK
    overrides = {"architectures": args.architectures, "depths": args.depths,
                 "activations": args.activations, "inits": args.inits, "seeds": args.seeds}
    config = ScanConfig(**{k: v for k, v in overrides.items() if v is not None})
    prepare_output_dir(args.out)
    run_scan(config, args.out, progress=progress)
    print(f"scan written to {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
