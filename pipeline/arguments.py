"""The command line's arguments: one subparser per pipeline stage, ``score`` and the
generative commands, with every option's help text (also the source of the generated CLI
reference in the documentation).

Building the parser imports nothing heavy, so every command starts fast.

Example:
    >>> build_parser().parse_args(["sample", "--n", "2", "--out", "s"]).n
    2
"""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pipeline.config.kinds import PATH_MODES

ABOUT = ("vae-anomaly: one subcommand per pipeline stage, plus score for new scans and the "
         "generative commands sample, interpolate, impute and loglik.")

STAGES = ("cohort", "prepare", "train", "calibrate", "validate", "evaluate", "generative",
          "report")
GENERATIVE = ("sample", "interpolate", "impute", "loglik")


def _model_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--model", default=None,
                    help="model folder or MLflow URI (default: models:/<configured>@champion)")
    sp.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where the model runs (auto: a CUDA GPU when there is one)")


def _common() -> argparse.ArgumentParser:
    """Options every subcommand also takes after its name (``score … --debug``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logs")
    return common


def _stage_parsers(sub: Any) -> None:
    for name in STAGES:
        sp = sub.add_parser(name, help=f"run the {name} stage (as dvc.yaml does)",
                            parents=[_common()])
        sp.add_argument("--params", type=Path, default=None,
                        help="parameter file (default: configs/params.yaml of the project)")
        if name == "train":
            sp.add_argument("--resume", action="store_true",
                            help="continue from the newest checkpoint of a run with the same "
                                 "parameters, data and code (else start from the beginning)")
            sp.add_argument("--autoencoder", action="store_true",
                            help="train the evaluation's baseline: the same network as a plain "
                                 "autoencoder (beta = 0) into models/autoencoder")


def _score_parser(sub: Any) -> None:
    sc = sub.add_parser("score", help="score native-space NIfTI scans", parents=[_common()])
    sc.add_argument("scans", nargs="+", type=Path,
                    help="NIfTI scans (.nii or .nii.gz), or folders: every NIfTI in them")
    sc.add_argument("--out", type=Path, required=True, help="output folder")
    sc.add_argument("--brain-mask", type=Path, action="append", default=None,
                    help="brain mask on the scan's grid (repeat once per scan, in order)")
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
    _model_options(sc)


def _generative_parsers(sub: Any) -> None:
    common = [_common()]
    sp = sub.add_parser("sample", help="draw synthetic healthy scans from the VAE's prior",
                        parents=common)
    sp.add_argument("--n", type=int, required=True, help="number of samples")
    sp.add_argument("--out", type=Path, required=True, help="output folder")
    sp.add_argument("--temperature", type=float, default=None,
                    help="scale of the prior N(0, T^2 I) (default: the model's)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the latent draws")
    sp.add_argument("--noise", action="store_true",
                    help="draw x ~ p(x|z) (decoder noise) instead of the decoder mean")
    ip = sub.add_parser("interpolate", help="decode along the latent path between two scans",
                        parents=common)
    ip.add_argument("scans", nargs=2, type=Path, help="scans A and B (NIfTI)")
    ip.add_argument("--steps", type=int, default=None, help="points on the path, ends included")
    ip.add_argument("--mode", choices=("both", *PATH_MODES), default="both",
                    help="the latent path: straight (linear), spherical (slerp) or both")
    ip.add_argument("--out", type=Path, required=True, help="output folder")
    ip.add_argument("--brain-mask", type=Path, nargs=2, default=None, metavar=("MASK_A", "MASK_B"),
                    help="brain masks of scans A and B (default: derived)")
    mp = sub.add_parser("impute", help="fill a missing region with healthy tissue",
                        parents=common)
    mp.add_argument("scan", type=Path, help="NIfTI scan")
    mp.add_argument("--mask", type=Path, required=True,
                    help="missing region (non-zero voxels) on the scan's grid")
    mp.add_argument("--out", type=Path, required=True, help="output folder")
    mp.add_argument("--brain-mask", type=Path, default=None,
                    help="brain mask on the scan's grid (default: derived)")
    lp = sub.add_parser("loglik", help="importance-weighted log-likelihood bound per scan",
                        parents=common)
    lp.add_argument("scans", nargs="+", type=Path, help="NIfTI scans")
    lp.add_argument("--k", type=int, default=None, help="importance samples (default: model's)")
    lp.add_argument("--seed", type=int, default=0, help="seed of the importance samples")
    lp.add_argument("--brain-mask", type=Path, action="append", default=None,
                    help="brain mask on the scan's grid (repeat once per scan, in order)")
    lp.add_argument("--out", type=Path, default=None, help="also write loglik.json here")
    for p in (sp, ip, mp, lp):
        _model_options(p)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vae-anomaly", description=ABOUT)
    ap.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    ap.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = ap.add_subparsers(dest="command", required=True)
    _stage_parsers(sub)
    _score_parser(sub)
    _generative_parsers(sub)
    return ap


def _version() -> str:
    try:
        return version("vae-anomaly")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"
