"""The cohort page's section on the VAE as a generative model.

It reads ``reports/generative.json`` (the ``generative`` stage), the ``log_likelihood`` entry
of ``reports/metrics.json`` (``evaluate``) and the stage's preview PNGs, and shows samples,
interpolation, imputation and log-likelihood figures next to their targets
(``templates/generative_section.html.j2``).

Example:
    >>> generative_section(None, {}, {})
    Markup('')
    >>> "Imputation of a 20 mm cube" in generative_section(
    ...     {"imputation": {"cube_mm": 20, "scans": []}}, {}, {})
    True
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from pipeline.reporting.html import Cell, Table, cells, fragment
from pipeline.reporting.render import data_uri

DASH = "–"


def _f(value: Any, fmt: str = "{:.3f}") -> str:
    return fmt.format(value) if isinstance(value, int | float) else DASH


def _yes(flag: Any) -> Cell:
    return Cell("yes") if flag else Cell("no", strong=True)


def _samples(s: dict[str, Any]) -> dict[str, Any]:
    table = Table(["", "brain mean", "brain std", "mean rel. diff", "std rel. diff",
                   "within tolerance"])
    for label, d in (("training scans", s.get("training", {})),
                     ("samples: decoder mean E[x|z]", s.get("decoder_mean", {})),
                     ("samples: x ~ p(x|z)", s.get("with_decoder_noise", {}))):
        table.rows.append([Cell(label, cls="name"), *cells(
            _f(d.get("mean"), "{:.4f}"), _f(d.get("std"), "{:.4f}"), _f(d.get("mean_rel_diff")),
            _f(d.get("std_rel_diff"))), _yes(d.get("within_tolerance", True))])
    novelty = [("SSIM of each sample to its nearest training scan (max)",
                _f(s.get("nearest_training_ssim_max"))),
               ("same for held-out healthy scans (median)",
                _f(s.get("held_out_nearest_training_ssim_median"))),
               ("SSIM between samples (mean)", _f(s.get("pairwise_ssim_mean"))),
               ("novel (no sample a copy)", "yes" if s.get("novel") else "no")]
    return {"n": s.get("n"), "temperature": s.get("temperature"), "table": table,
            "novelty": novelty}


def _interpolation(it: dict[str, Any]) -> dict[str, Any]:
    table = Table(["path", "SSIM end A", "SSIM end B", "change end to end",
                   "change between inputs", "largest step / even share", "smooth"])
    for mode, p in it.get("paths", {}).items():
        table.rows.append([Cell(mode, cls="name"), *cells(
            *(_f(p["endpoint_ssim"].get(end)) for end in ("a", "b")),
            _f(p.get("end_to_end_change"), "{:.4f}"), _f(it.get("inputs_change"), "{:.4f}"),
            _f(p["max_step_over_even_share"], "{:.2f}")), _yes(p["smooth"])])
    return {"a": it.get("a"), "b": it.get("b"), "steps": it.get("steps"), "table": table}


def _imputation(im: dict[str, Any]) -> dict[str, Any]:
    keys = ("vae", "template_mean", "surroundings")
    table = Table(["scan", "voxels", "MAE VAE", "MAE template mean", "MAE surroundings"])
    for r in im.get("scans", []):
        table.rows.append([Cell(r["case"], cls="name"), *cells(
            r["voxels"], *(_f(r[f"mae_{k}"], "{:.4f}") for k in keys))])
    table.rows.append([Cell("mean", cls="name", strong=True), *cells(
        "", *(_f(im.get(f"mae_{k}"), "{:.4f}") for k in keys))])
    return {"cube_mm": im.get("cube_mm"), "table": table,
            "gain": _f(im.get("gain_over_template_mean")), "met": _yes(im.get("meets_target"))}


def _loglik(iwae: dict[str, Any] | None, ll: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"iwae": None, "pairs": None}
    if iwae:
        ks = iwae.get("k", [])
        out["iwae"] = Table(["K", *ks], [[Cell("mean over healthy test scans", cls="name"),
                                          *cells(*(_f(iwae["mean_nats"][k], "{:.1f}")
                                                   for k in ks))]])
        out["tightens"] = _yes(iwae.get("tightens"))
    if ll and ll.get("pairs") is not None:
        out["pairs"] = [
            (f"healthy test scans, mean (K = {ll.get('k')})",
             _f(ll.get("healthy_mean_nats"), "{:.1f}")),
            ("lesioned copies, mean", _f(ll.get("lesioned_mean_nats"), "{:.1f}")),
            ("lesioned copy below its healthy original",
             f"{_f(ll.get('lesioned_lower_fraction'), '{:.0%}')} of {ll.get('pairs')}"),
            ("mean drop (nats)", _f(ll.get("mean_drop_nats"), "{:.1f}")),
            ("scan AUROC of −log-likelihood", _f(ll.get("scan_auroc")))]
    return out


def generative_section(gen: dict[str, Any] | None, metrics: dict[str, Any],
                       images: dict[str, bytes]) -> Markup:
    """The section's markup, empty when neither stage has produced anything for it."""
    ll = metrics.get("log_likelihood")
    if not gen and not ll:
        return Markup("")
    gen = gen or {}
    return fragment(
        "generative_section.html.j2",
        samples=_samples(gen["samples"]) if gen.get("samples") else None,
        interpolation=_interpolation(gen["interpolation"]) if gen.get("interpolation")
        else None,
        imputation=_imputation(gen["imputation"]) if gen.get("imputation") else None,
        loglik=_loglik(gen.get("iwae"), ll),
        images={k: data_uri(v) for k, v in images.items() if v})
