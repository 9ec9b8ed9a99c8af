"""``vae-anomaly``: one subcommand per pipeline stage, plus ``score`` for new scans and the
generative commands ``sample``, ``interpolate``, ``impute`` and ``loglik``.

Exit status: 0 success; 1 one or more inputs failed (one ``error: <path>: <reason>`` line
each on stderr, the others still processed); 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.config import UsageError
from pipeline.genargs import COMMANDS as GENERATIVE
from pipeline.genargs import add_parsers

STAGES = ("cohort", "prepare", "train", "calibrate", "evaluate", "generative", "report")


def _parser() -> argparse.ArgumentParser:
    about = " ".join(__doc__.split("\n\n")[0].split())
    ap = argparse.ArgumentParser(prog="vae-anomaly", description=about)
    ap.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = ap.add_subparsers(dest="command", required=True)
    for name in STAGES:
        sp = sub.add_parser(name, help=f"run the {name} stage (as dvc.yaml does)")
        sp.add_argument("--params", type=Path, default=None,
                        help="parameter file (default: configs/params.yaml of the project)")
        if name == "train":
            sp.add_argument("--resume", action="store_true",
                            help="continue from the newest checkpoint of a run with the same "
                                 "parameters, data and code (else start from the beginning)")
            sp.add_argument("--autoencoder", action="store_true",
                            help="train the evaluation's baseline: the same network as a plain "
                                 "autoencoder (beta = 0) into models/autoencoder")
    sc = sub.add_parser("score", help="score native-space NIfTI scans")
    sc.add_argument("scans", nargs="+", type=Path, help="NIfTI scans (.nii or .nii.gz)")
    sc.add_argument("--out", type=Path, required=True, help="output folder")
    sc.add_argument("--model", default=None,
                    help="model folder or MLflow URI (default: models:/<configured>@champion)")
    sc.add_argument("--brain-mask", type=Path, action="append", default=None,
                    help="brain mask on the scan's grid (repeat once per scan, in order)")
    sc.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sc.add_argument("--workers", type=int, default=None, metavar="N",
                    help="processes that prepare the next scans while the model runs "
                         "(default: one per CPU less one, none for a single scan; per rank "
                         "under torchrun)")
    sc.add_argument("--no-report", action="store_true", help="skip the HTML report")
    sc.add_argument("--force", action="store_true",
                    help="re-score scans whose outputs are complete and up to date (by default "
                         "they are kept: input, mask, model and options hash the same)")
    sc.add_argument("--convention", choices=("radiological", "neurological"), default=None,
                    help="left/right display of the report's axial and coronal views "
                         "(default: the model's report.convention)")
    add_parsers(sub)
    return ap


def _stage(args: argparse.Namespace) -> int:
    import importlib

    from pipeline.config import load_params

    params = load_params(args.params)
    module = importlib.import_module(f"pipeline.stages.{args.command}")
    if args.command == "train":
        module.run(params, resume=args.resume, autoencoder=args.autoencoder)
    else:
        module.run(params)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line usage error
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("matplotlib", "PIL", "alembic", "mlflow", "urllib3", "git", "nibabel"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run: Callable[[], int]
    if args.command == "score":
        from pipeline.score import score_command

        def run() -> int:
            return score_command(args)
    elif args.command in GENERATIVE:
        from pipeline.gencli import COMMANDS

        def run() -> int:
            return COMMANDS[args.command](args)
    else:
        def run() -> int:
            return _stage(args)
    try:
        return run()
    except UsageError as exc:
        from pipeline.nifti import shown

        print(f"error: {shown(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        from pipeline.nifti import one_line

        print(f"error: {args.command}: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
