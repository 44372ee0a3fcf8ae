"""`python -m ml train | evaluate | predict | ensemble | promote | calibrate | benchmark`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml", description="ChestNet model tools.")
    commands = parser.add_subparsers(required=True, dest="command")

    train = commands.add_parser("train", help="train a model and write an artifact with its card")
    train.add_argument(
        "--config", help="JSON file of TrainConfig fields (nested 'model', 'augment')"
    )
    train.add_argument("--data-root", dest="data_root")
    train.add_argument("--output", help="path of the .keras file to write (card beside it)")
    train.add_argument("--version")
    train.add_argument("--seed", type=int)
    train.add_argument("--split-seed", dest="split_seed", type=int)
    train.add_argument("--split", choices=("batch", "patient"))
    train.add_argument("--geometry", dest="augment.geometry", choices=("crop", "affine"))
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", dest="batch_size", type=int)
    train.add_argument("--learning-rate", dest="learning_rate", type=float)
    train.add_argument("--target-sensitivity", dest="target_sensitivity", type=float)
    train.add_argument("--limit-per-class", dest="limit_per_class", type=int)
    train.add_argument("--arch", dest="model.arch")
    train.add_argument("--image-size", dest="model.image_size", type=int)
    train.add_argument("--width", dest="model.width", type=int)
    train.add_argument("--dropout", dest="model.dropout", type=float)
    train.add_argument(
        "--no-standardize",
        dest="model.standardize",
        action="store_const",
        const=False,
        help="skip the per-image standardisation layer (the baseline recipe)",
    )
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="score a model on DATA_DIR/{NORMAL,PNEUMONIA}")
    evaluate.add_argument("data_dir")
    evaluate.add_argument(
        "--predictions", required=True, help="CSV to write: path,probability,label"
    )
    evaluate.add_argument("--model", help="a .keras artifact (default: the shipped model)")
    evaluate.add_argument("--report", help="folder for metrics.json and plots")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser("predict", help="print one JSON line per file")
    predict.add_argument("files", nargs="+")
    predict.add_argument("--model")
    predict.add_argument("--heatmap-dir", help="write <name>.heatmap.png overlays here")
    predict.add_argument(
        "--age",
        type=float,
        help="the patient's age in years, for files whose header does not give it (PNG, "
        "JPEG); without one, a result carries an 'age unknown' warning",
    )
    predict.set_defaults(handler=_predict)

    ensemble = commands.add_parser(
        "ensemble", help="join trained members into one calibrated, gated artifact"
    )
    ensemble.add_argument("members", nargs="+", help="members' .keras files (one shared split)")
    ensemble.add_argument("--output", required=True)
    ensemble.add_argument("--version", required=True)
    ensemble.add_argument("--target-sensitivity", type=float, default=0.97)
    ensemble.add_argument(
        "--trim", type=float, default=0.0, help="fraction of each border trimmed at serving"
    )
    ensemble.add_argument(
        "--refuse-fraction",
        type=float,
        default=0.01,
        help="largest share of validation images the learned gate may refuse",
    )
    ensemble.set_defaults(handler=_ensemble)

    promote = commands.add_parser("promote", help="copy a trained candidate to the shipped default")
    promote.add_argument("source", help="the candidate's .keras file")
    promote.add_argument("--version", required=True, help="release version to record")
    promote.add_argument("--to", help="destination .keras (default: the shipped default)")
    promote.add_argument(
        "--target-sensitivity", type=float, help="re-choose the threshold on validation"
    )
    promote.set_defaults(handler=_promote)

    calibrate = commands.add_parser(
        "calibrate",
        help="refit the calibration and threshold on a site's labelled DATA_DIR/{NORMAL,PNEUMONIA}",
    )
    calibrate.add_argument("data_dir")
    calibrate.add_argument("--output", required=True, help="the calibrated .keras to write")
    calibrate.add_argument("--model", help="the base .keras artifact (default: the shipped model)")
    calibrate.add_argument("--target-sensitivity", type=float, default=0.97)
    calibrate.add_argument(
        "--min-per-class", type=int, default=50, help="fewest analysed images of each class"
    )
    calibrate.add_argument("--version", help="default: <base version>-site-<YYYYMMDD>")
    calibrate.add_argument("--site", default="", help="the site's name, recorded on the card")
    calibrate.add_argument("--batch-size", type=int, default=32)
    calibrate.set_defaults(handler=_calibrate)

    benchmark = commands.add_parser("benchmark", help="time preprocessing, forward pass, heatmap")
    benchmark.add_argument("--model")
    benchmark.add_argument("--runs", type=int, default=50)
    benchmark.add_argument("--batch-size", type=int, default=16)
    benchmark.add_argument("--data-root", help="radiographs to time (default: ../shared/data)")
    benchmark.set_defaults(handler=_benchmark)
    return parser


def _train(args: argparse.Namespace) -> int:
    from ml.artifact import ModelCard
    from ml.train import resolve_config, train

    overrides = {k: v for k, v in vars(args).items() if k not in {"config", "handler", "command"}}
    card = ModelCard.from_dict(train(resolve_config(args.config, overrides)))
    validation = card.validation or {}
    print(
        json.dumps(
            {
                "version": card.version,
                "threshold": card.threshold,
                "validation": {
                    k: validation[k]
                    for k in (
                        "roc_auc",
                        "accuracy",
                        "sensitivity",
                        "specificity",
                        "expected_calibration_error",
                    )
                },
            },
            indent=2,
        )
    )
    return 0


_HEADLINE = (
    "count",
    "accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "roc_auc",
    "roc_auc_ci95",
    "expected_calibration_error",
    "threshold",
    "submitted",
    "refused",
    "refused_by_reason",
)


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ml.evaluate import evaluate_folder, write_predictions

    summary, rows, refused = evaluate_folder(
        args.data_dir, model=args.model, report=args.report, batch_size=args.batch_size
    )
    for path, reason, message in refused:
        print(f"refused ({reason}): {path}: {message}", file=sys.stderr)
    write_predictions(Path(args.predictions), rows)
    print(json.dumps({key: summary[key] for key in _HEADLINE}, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    """Exit status 1 when a file could not be opened, else 0: a refusal is a result."""
    from ml.evaluate import predict_files

    unopened = 0
    for line, opened in predict_files(
        args.files, model=args.model, heatmap_dir=args.heatmap_dir, age_years=args.age
    ):
        print(json.dumps(line))
        unopened += not opened
    return 1 if unopened else 0


def _ensemble(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from ml.artifact import ModelCard
    from ml.ensemble import combine

    written = combine(
        [Path(m) for m in args.members],
        output=Path(args.output),
        version=args.version,
        command="python -m ml " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        target_sensitivity=args.target_sensitivity,
        refuse_fraction=args.refuse_fraction,
        trim=args.trim,
    )
    card = ModelCard.from_dict(written)
    validation, in_batch = card.validation or {}, card.in_batch_validation or {}
    keys = ("roc_auc", "accuracy", "sensitivity", "specificity", "expected_calibration_error")
    print(
        json.dumps(
            {
                "version": card.version,
                "threshold": card.threshold,
                "validation": {k: validation[k] for k in keys},
                "in_batch_validation": {k: in_batch.get(k) for k in keys},
                "gate_validation_refusal_rate": (card.gate or {})["validation_refusal_rate"],
            },
            indent=2,
        )
    )
    return 0


def _promote(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from ml.artifact import DEFAULT_ARTIFACT, ModelCard
    from ml.promote import promote

    command = "python -m ml " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    written = promote(
        Path(args.source),
        version=args.version,
        destination=Path(args.to) if args.to else DEFAULT_ARTIFACT,
        command=command,
        target_sensitivity=args.target_sensitivity,
    )
    card = ModelCard.from_dict(written)
    print(f"{card.version} (from {card.candidate_version}) sha256 {card.sha256}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import shlex

    from ml.artifact import ModelCard
    from ml.calibrate import calibrate_folder

    written = calibrate_folder(
        args.data_dir,
        output=args.output,
        model=args.model,
        version=args.version,
        target_sensitivity=args.target_sensitivity,
        min_per_class=args.min_per_class,
        batch_size=args.batch_size,
        site=args.site,
        command="python -m ml " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    card = ModelCard.from_dict(written)
    entry = card.site_calibration or {}
    keys = [
        *("threshold", "scale", "shift", "sensitivity", "sensitivity_ci95", "specificity"),
        *("specificity_ci95", "expected_calibration_error", "roc_auc", "figures_are"),
    ]
    scoring = entry["scoring"]
    summary = {"version": card.version, "base_version": entry["base_version"]}
    summary.update(counts=entry["images"], **{key: entry[key] for key in keys})
    summary.update(refused=scoring["refused"], refused_by_reason=scoring["refused_by_reason"])
    print(json.dumps(summary, indent=2))
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ml.benchmark import run_benchmark
    from ml.config import DEFAULT_DATA

    results = run_benchmark(
        model=args.model,
        runs=args.runs,
        batch_size=args.batch_size,
        data_root=Path(args.data_root) if args.data_root else DEFAULT_DATA,
    )
    print(json.dumps(results, indent=2))
    return 0
