"""Errors a user sees, and how their text is kept to one printable line.

Every command reports a bad input as one ``error: <path>: <reason>`` line and exits 1, and a
bad command line or configuration as one ``error: <reason>`` line with exit status 2; these
are the exception types behind those lines.

Example:
    >>> shown("scan\\nüber.nii.gz")
    'scan\\\\nüber.nii.gz'
    >>> one_line(ScanError("file is empty\\nsecond line"))
    'file is empty'
"""

from __future__ import annotations


class ScanError(Exception):
    """An input that cannot be processed; ``str()`` is a one-line reason."""


class UsageError(ValueError):
    """A bad command line or configuration: the CLI exits with status 2."""


def shown(path: object) -> str:
    """A path (or text) printable on one line: control characters escaped, unicode kept."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type), for ``error:`` lines."""
    text = str(exc).strip().splitlines()
    return shown(text[0] if text else type(exc).__name__)[:limit]
