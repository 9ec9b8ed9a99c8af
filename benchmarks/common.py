"""What every benchmark does with its result: add the machine, print it, keep it as JSON."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets; the
# fraction of peak a benchmark reports is measured FLOP/s over this.
BF16_DENSE_PEAK_TFLOPS = {
    "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.5, "H100 PCIe": 756.5,
    "H200": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10": 125.0,
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_peak_tflops(name: str) -> float | None:
    """The bf16 dense peak of a GPU named ``name`` (longest matching key), if known."""
    hits = [k for k in BF16_DENSE_PEAK_TFLOPS if k.lower() in name.lower()]
    return BF16_DENSE_PEAK_TFLOPS[max(hits, key=len)] if hits else None


def machine() -> dict[str, Any]:
    """CPU, cores this process may use, memory, GPU (name, memory, bf16 peak), versions."""
    info: dict[str, Any] = {
        "platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "python": sys.version.split()[0]}
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {"name": props.name, "memory_gb": round(props.total_memory / 1e9, 1),
                           "count": torch.cuda.device_count(),
                           "bf16_dense_peak_tflops": gpu_peak_tflops(props.name)}
    except ImportError:
        pass
    return info


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), in MB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux: kilobytes


def publish(name: str, result: dict[str, Any]) -> None:
    """Print ``result`` (plus machine facts) and write it to ``reports/benchmarks/<name>.json``."""
    result = {"benchmark": name, **result, "machine": machine()}
    out_dir = REPO / "reports" / "benchmarks"
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    (out_dir / f"{name}.json").write_text(text)
    print(text, end="")
