"""The `gradprobe` command line: parse, call the library, print. No logic lives only here.

Exit codes: 0 success (a diverged run is a result), 2 bad input, 1 anything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from pydantic import ValidationError

from gradprobe import __version__
from gradprobe.config import Activation, Init, Norm, Optimizer, Scheduler
from gradprobe.errors import InputError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args)
    except InputError as error:
        print(f"gradprobe {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        print(f"gradprobe {args.command}: error: invalid option: {problems}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradprobe",
        description="A laboratory for gradient flow in deep networks.",
    )
    parser.add_argument("--version", action="version", version=f"gradprobe {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = commands.add_parser("models", help="list the model zoo, or summarise one model")
    models.add_argument("name", nargs="?", help="a model name: print its per-layer summary")
    _add_model_options(models)
    models.add_argument("--num-classes", type=int, default=10)
    models.add_argument("--image-size", type=int, default=32)
    models.set_defaults(handler=_models)

    datasets = commands.add_parser("datasets", help="list the dataset kinds")
    datasets.set_defaults(handler=_datasets)

    train = commands.add_parser("train", help="train one run into a run directory")
    train.add_argument("--model", required=True, help="model name (see `gradprobe models`)")
    train.add_argument("--out", required=True, type=Path, help="run directory")
    _add_model_options(train)
    _add_data_options(train)
    _add_train_options(train)
    train.add_argument("--metrics", nargs="+", default=None, help="probe metrics to record")
    train.add_argument("--every", type=int, default=1, help="record every k-th step")
    train.add_argument("--quiet", action="store_true", help="print nothing but errors")
    train.add_argument("--force", action="store_true",
                       help="discard what --out holds and train from scratch")
    train.set_defaults(handler=_train)

    study = commands.add_parser("study", help="run a study and write its report")
    study.add_argument("spec", nargs="?", default=None,
                       help="a YAML spec or a built-in study (default: vanishing-gradients)")
    study.add_argument("--out", type=Path, default=Path("runs/study"), help="study directory")
    study.add_argument("--preset", choices=("smoke", "quick", "full"), default=None,
                       help="sizes merged under the spec (default: full with CUDA, else quick)")
    study.add_argument("--dataset", default=None, help=_DATASET_HELP)
    study.add_argument("--jobs", type=int, default=1, help="runs at once in a process pool")
    study.add_argument("--executor", choices=("local", "ray"), default="local")
    study.add_argument("--ray-address", default=None, help="an existing Ray cluster's address")
    study.add_argument("--quiet", action="store_true")
    study.set_defaults(handler=_study)

    report = commands.add_parser("report", help="(re)write the report of a study directory")
    report.add_argument("dir", type=Path)
    report.add_argument("--metric", default="weight_grad_norm",
                        choices=("weight_grad_norm", "weight_grad_rms", "output_grad_norm"))
    report.set_defaults(handler=_report)

    scan = commands.add_parser("scan", help="gradient flow at initialisation across depths")
    scan.add_argument("--out", type=Path, default=Path("runs/scan"))
    scan.add_argument("--architectures", "--models", nargs="+", default=None,
                      help="plain plain_bn residual residual_bn (with --theory: zoo models)")
    scan.add_argument("--depths", nargs="+", type=int, default=None)
    scan.add_argument("--activations", nargs="+", default=None, choices=get_args(Activation))
    scan.add_argument("--inits", nargs="+", default=None, choices=get_args(Init))
    scan.add_argument("--seeds", type=int, default=None)
    scan.add_argument("--theory", action="store_true",
                      help="predict the profile at initialisation from theory alone (no run)")
    scan.add_argument("--quiet", action="store_true")
    scan.set_defaults(handler=_scan)
    return parser


_DATASET_HELP = "synthetic, fashion-mnist, cifar10, or a path to an ImageFolder tree"


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier")
    parser.add_argument("--norm", choices=get_args(Norm), default=None,
                        help="default: the family's (batch for resnets, none for VGG/MLP)")
    parser.add_argument("--activation", choices=get_args(Activation), default="relu")
    parser.add_argument("--init", choices=get_args(Init), default="kaiming")
    parser.add_argument("--depth", type=int, default=None, help="layers, where the family has it")
    parser.add_argument("--stem", choices=("imagenet", "cifar"), default=None,
                        help="resnet/plain stem")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic", help=_DATASET_HELP)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--data-root", default=None, help="where fashion-mnist/cifar10 live")
    parser.add_argument("--download", action="store_true", help="let torchvision download")
    parser.add_argument("--images-per-class", type=int, default=600, help="synthetic only")
    parser.add_argument("--num-classes", type=int, default=3, help="synthetic only")
    parser.add_argument("--max-train-images", type=int, default=None)
    parser.add_argument("--augment", action="store_true", help="random crop + horizontal flip")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the split")


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--optimizer", choices=get_args(Optimizer), default="sgd")
    parser.add_argument("--scheduler", choices=get_args(Scheduler), default="step")
    parser.add_argument("--step-size", type=int, default=5)
    parser.add_argument("--gamma", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    parser.add_argument("--tensorboard", action="store_true")
    parser.add_argument("--max-steps-per-epoch", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="also checkpoint every N steps inside an epoch")


def _progress(quiet: bool):
    from gradprobe.progress import ConsoleProgress, NullProgress

    return NullProgress() if quiet else ConsoleProgress()


def _models(args: argparse.Namespace) -> int:
    from gradprobe.models import build_model, count_parameters, list_models, model_summary

    options = {"num_classes": args.num_classes, "width": args.width, "norm": args.norm,
               "activation": args.activation, "init": args.init, "depth": args.depth,
               "stem": args.stem}
    if args.name:
        model = build_model(args.name, **options)
        print(model_summary(model, input_size=(1, 3, args.image_size, args.image_size)))
        return EXIT_OK
    print(f"{'model':<16}{'parameters':>14}  (num_classes={args.num_classes}, "
          f"width={args.width})")
    for name in list_models():
        family_options = {k: v for k, v in options.items() if k not in ("stem", "depth")}
        print(f"{name:<16}{count_parameters(build_model(name, **family_options)):>14,}")
    return EXIT_OK


def _datasets(args: argparse.Namespace) -> int:
    from gradprobe.data import list_datasets

    for kind, description in list_datasets():
        print(f"{kind:<16}{description}")
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from gradprobe.config import DataConfig, ModelConfig, ProbeConfig, RunConfig, TrainConfig
    from gradprobe.models import list_models
    from gradprobe.train import train

    if args.model not in list_models():
        raise InputError(f"unknown model {args.model!r}; known models: "
                         f"{', '.join(list_models())}.")
    probe = {"every": args.every} | ({"metrics": tuple(args.metrics)} if args.metrics else {})
    config = RunConfig(
        model=ModelConfig(name=args.model, depth=args.depth, width=args.width, norm=args.norm,
                          activation=args.activation, init=args.init, stem=args.stem),
        data=DataConfig(dataset=args.dataset, image_size=args.image_size, seed=args.data_seed,
                        images_per_class=args.images_per_class, num_classes=args.num_classes,
                        max_train_images=args.max_train_images, data_root=args.data_root,
                        download=args.download, augment=args.augment),
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          momentum=args.momentum, weight_decay=args.weight_decay,
                          optimizer=args.optimizer, scheduler=args.scheduler,
                          step_size=args.step_size, gamma=args.gamma, seed=args.seed,
                          device=args.device, amp=args.amp, tensorboard=args.tensorboard,
                          max_steps_per_epoch=args.max_steps_per_epoch,
                          checkpoint_every=args.checkpoint_every),
        probe=ProbeConfig(**probe),
    )
    result = train(config, args.out, force=args.force, progress=_progress(args.quiet))
    if result.state == "diverged":
        print(f"{args.out}: diverged at step {result.summary['diverged_step']} "
              "(a result, not a crash: see status.json)")
    elif not args.quiet:
        print(f"{args.out}: {result.state}, test accuracy {result.summary['test_acc']:.3f}")
    return EXIT_OK


def _study(args: argparse.Namespace) -> int:
    from gradprobe.study import plan_study, run_study, spec_from_argument
    from gradprobe.study.runner import describe_plan
    from gradprobe.train.device import resolve_device

    spec = spec_from_argument(args.spec)
    plan = plan_study(spec, preset=args.preset, dataset=args.dataset)
    progress = _progress(args.quiet)
    for line in describe_plan(plan, args.out.resolve(), resolve_device("auto").type):
        progress.message(line)
    result = run_study(spec, args.out, preset=plan.preset, dataset=args.dataset, jobs=args.jobs,
                       executor=args.executor, ray_address=args.ray_address, progress=progress)
    print(_format_rows(result.rows))
    print(f"report: {result.report.get('html', result.study_dir / 'report.html')}")
    return EXIT_OK


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

    if not (args.dir / "study.yaml").exists() and not (args.dir / "runs").is_dir():
        raise InputError(f"{args.dir} is not a study directory (no study.yaml or runs/); "
                         "pass the --out of a `gradprobe study`.")
    paths = write_report(args.dir, metric=args.metric)
    for kind, path in paths.items():
        if kind in ("html", "md"):
            print(f"{kind}: {path}")
    return EXIT_OK


def _scan(args: argparse.Namespace) -> int:
    from gradprobe.scan import ScanConfig, TheoryConfig, run_scan, run_theory

    progress = _progress(args.quiet)
    if args.theory:
        options = {"models": args.architectures, "depths": args.depths,
                   "activations": args.activations, "inits": args.inits}
        theory = TheoryConfig(**{k: v for k, v in options.items() if v is not None})
        run_theory(theory, args.out, progress=progress)
        print(f"theory written to {args.out}")
        return EXIT_OK
    overrides = {"architectures": args.architectures, "depths": args.depths,
                 "activations": args.activations, "inits": args.inits, "seeds": args.seeds}
    config = ScanConfig(**{k: v for k, v in overrides.items() if v is not None})
    run_scan(config, args.out, progress=progress)
    print(f"scan written to {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
