"""What every benchmark does with its result: add the machine, print it, keep it as JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def publish(name: str, result: dict[str, Any]) -> None:
    """Print ``result`` (plus machine facts) and write it to ``reports/benchmarks/<name>.json``."""
    result = {"benchmark": name, **result,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": sys.version.split()[0]}}
    out_dir = REPO / "reports" / "benchmarks"
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    (out_dir / f"{name}.json").write_text(text)
    print(text, end="")
