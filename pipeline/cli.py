"""``vae-anomaly``: one subcommand per pipeline stage, plus ``score`` for new scans and the
generative commands ``sample``, ``interpolate``, ``impute`` and ``loglik``.

Exit status: 0 success; 1 one or more inputs failed (one ``error: <path>: <reason>`` line
each on stderr, the others still processed); 2 usage or configuration error. Building the
parser imports nothing heavy, so every command starts fast.

The arguments and their help texts are :mod:`pipeline.arguments` (so editing a help text
re-runs no DVC stage: this dispatcher is every stage's entry point).

Example:
    >>> main(["score"])   # no scan: argparse prints a one-line usage error
    2
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from pipeline.arguments import GENERATIVE, build_parser
from pipeline.io.errors import UsageError, one_line, shown

QUIET_LOGGERS = ("matplotlib", "PIL", "alembic", "mlflow", "urllib3", "git", "nibabel")


def _stage(args: argparse.Namespace) -> int:
    import importlib

    from pipeline.config.params import load_params

    params = load_params(args.params)
    module = importlib.import_module(f"pipeline.stages.{args.command}")
    if args.command == "train":
        module.run(params, resume=args.resume, autoencoder=args.autoencoder)
    else:
        module.run(params)
    return 0


def _command(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    """The function that runs the parsed command (imported only when it runs)."""
    if args.command == "score":
        from pipeline.commands.score import score_command

        return score_command
    if args.command in GENERATIVE:
        from pipeline.commands.generative import COMMANDS

        return COMMANDS[args.command]
    return _stage


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line usage error
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return _command(args)(args)
    except UsageError as exc:
        print(f"error: {shown(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"error: {args.command}: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
