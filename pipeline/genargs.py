"""Command-line arguments of the generative commands (kept free of heavy imports, so that
building the parser for any ``vae-anomaly`` command stays fast).

Example:
    >>> import argparse
    >>> ap = argparse.ArgumentParser(); add_parsers(ap.add_subparsers(dest="command"))
    >>> ap.parse_args(["sample", "--n", "2", "--out", "s"]).n
    2
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

COMMANDS = ("sample", "interpolate", "impute", "loglik")
PATH_MODES = ("linear", "spherical")  # as pipeline.generative.PATH_MODES (tested)


def _common(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--model", default=None,
                    help="model folder or MLflow URI (default: models:/<configured>@champion)")
    sp.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def add_parsers(sub: Any) -> None:
    """The generative subcommands of ``vae-anomaly``."""
    sp = sub.add_parser("sample", help="draw synthetic healthy scans from the VAE's prior")
    sp.add_argument("--n", type=int, required=True, help="number of samples")
    sp.add_argument("--out", type=Path, required=True, help="output folder")
    sp.add_argument("--temperature", type=float, default=None,
                    help="scale of the prior N(0, T^2 I) (default: the model's)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--noise", action="store_true",
                    help="draw x ~ p(x|z) (decoder noise) instead of the decoder mean")
    ip = sub.add_parser("interpolate", help="decode along the latent path between two scans")
    ip.add_argument("scans", nargs=2, type=Path, help="scans A and B (NIfTI)")
    ip.add_argument("--steps", type=int, default=None, help="points on the path, ends included")
    ip.add_argument("--mode", choices=("both", *PATH_MODES), default="both")
    ip.add_argument("--out", type=Path, required=True)
    ip.add_argument("--brain-mask", type=Path, nargs=2, default=None, metavar=("MASK_A", "MASK_B"))
    mp = sub.add_parser("impute", help="fill a missing region with healthy tissue")
    mp.add_argument("scan", type=Path)
    mp.add_argument("--mask", type=Path, required=True,
                    help="missing region (non-zero voxels) on the scan's grid")
    mp.add_argument("--out", type=Path, required=True)
    mp.add_argument("--brain-mask", type=Path, default=None)
    lp = sub.add_parser("loglik", help="importance-weighted log-likelihood bound per scan")
    lp.add_argument("scans", nargs="+", type=Path)
    lp.add_argument("--k", type=int, default=None, help="importance samples (default: model's)")
    lp.add_argument("--seed", type=int, default=0)
    lp.add_argument("--brain-mask", type=Path, action="append", default=None)
    lp.add_argument("--out", type=Path, default=None, help="also write loglik.json here")
    for p in (sp, ip, mp, lp):
        _common(p)
