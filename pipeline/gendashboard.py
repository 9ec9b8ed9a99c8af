"""The cohort page's section on the VAE as a generative model.

It reads ``reports/generative.json`` (the ``generative`` stage), the ``log_likelihood`` entry
of ``reports/metrics.json`` (``evaluate``) and the stage's preview PNGs, and shows samples,
interpolation, imputation and log-likelihood figures next to their targets.

Example:
    >>> generative_section(None, {}, {})
    ''
"""

from __future__ import annotations

from typing import Any

from pipeline.htmlkit import esc, meta_table, table
from pipeline.render import data_uri


def _f(value: Any, fmt: str = "{:.3f}") -> str:
    return esc(fmt.format(value)) if isinstance(value, int | float) else "–"


def _yes(flag: Any) -> str:
    return "yes" if flag else "<b>no</b>"


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f"<div><img alt='{esc(alt)}' src='{data_uri(png)}' style='max-width:100%'></div>"


def _samples(s: dict[str, Any], png: bytes | None) -> str:
    rows = [[f"<td class='name'>{esc(label)}</td>", _f(d.get("mean"), "{:.4f}"),
             _f(d.get("std"), "{:.4f}"), _f(d.get("mean_rel_diff")), _f(d.get("std_rel_diff")),
             _yes(d.get("within_tolerance", True))]
            for label, d in (("training scans", s.get("training", {})),
                             ("samples: decoder mean E[x|z]", s.get("decoder_mean", {})),
                             ("samples: x ~ p(x|z)", s.get("with_decoder_noise", {})))]
    novelty = meta_table([
        ("SSIM of each sample to its nearest training scan (max)",
         _f(s.get("nearest_training_ssim_max"))),
        ("same for held-out healthy scans (median)",
         _f(s.get("held_out_nearest_training_ssim_median"))),
        ("SSIM between samples (mean)", _f(s.get("pairwise_ssim_mean"))),
        ("novel (no sample a copy)", _yes(s.get("novel")))])
    return (f"<h3>Samples from the prior ({esc(s.get('n'))}, temperature "
            f"{esc(s.get('temperature'))})</h3>"
            + table(["", "brain mean", "brain std", "mean rel. diff", "std rel. diff",
                     "within tolerance"], rows) + novelty + _img(png, "samples"))


def _interpolation(it: dict[str, Any] | None, png: bytes | None) -> str:
    if not it:
        return ""
    rows = [[f"<td class='name'>{esc(mode)}</td>",
             *(_f(p["endpoint_ssim"].get(end)) for end in ("a", "b")),
             _f(p.get("end_to_end_change"), "{:.4f}"), _f(it.get("inputs_change"), "{:.4f}"),
             _f(p["max_step_over_even_share"], "{:.2f}"), _yes(p["smooth"])]
            for mode, p in it.get("paths", {}).items()]
    return (f"<h3>Interpolation {esc(it.get('a'))} → {esc(it.get('b'))} "
            f"({esc(it.get('steps'))} steps)</h3>"
            + table(["path", "SSIM end A", "SSIM end B", "change end to end",
                     "change between inputs", "largest step / even share", "smooth"], rows)
            + "<p class='note'>Rows: linear then spherical path, axial and coronal; first and "
              "last columns are the inputs.</p>" + _img(png, "interpolation"))


def _imputation(im: dict[str, Any] | None) -> str:
    if not im:
        return ""
    rows = [[f"<td class='name'>{esc(r['case'])}</td>", esc(r["voxels"]),
             *(_f(r[f"mae_{k}"], "{:.4f}") for k in ("vae", "template_mean", "surroundings"))]
            for r in im.get("scans", [])]
    rows.append(["<td class='name'><b>mean</b></td>", "",
                 *(_f(im.get(f"mae_{k}"), "{:.4f}")
                   for k in ("vae", "template_mean", "surroundings"))])
    return (f"<h3>Imputation of a {esc(im.get('cube_mm'))} mm cube (held-out healthy "
            f"scans, native grid)</h3>"
            + table(["scan", "voxels", "MAE VAE", "MAE template mean", "MAE surroundings"],
                    rows)
            + f"<p>Error reduction against the template mean: "
              f"{_f(im.get('gain_over_template_mean'))} (target met: "
              f"{_yes(im.get('meets_target'))}). MAE in normalised intensity units.</p>")


def _loglik(iwae: dict[str, Any] | None, ll: dict[str, Any] | None) -> str:
    out = "<h3>Log-likelihood (importance-weighted bound, nats per volume)</h3>"
    if iwae:
        out += table(["K", *iwae.get("k", [])],
                     [["<td class='name'>mean over healthy test scans</td>",
                       *(_f(iwae["mean_nats"][k], "{:.1f}") for k in iwae.get("k", []))]])
        out += f"<p>The bound tightens as K grows: {_yes(iwae.get('tightens'))}.</p>"
    if ll and ll.get("pairs") is not None:
        out += meta_table([
            (f"healthy test scans, mean (K = {ll.get('k')})", _f(ll.get("healthy_mean_nats"),
                                                                 "{:.1f}")),
            ("lesioned copies, mean", _f(ll.get("lesioned_mean_nats"), "{:.1f}")),
            ("lesioned copy below its healthy original",
             f"{_f(ll.get('lesioned_lower_fraction'), '{:.0%}')} of {esc(ll.get('pairs'))}"),
            ("mean drop (nats)", _f(ll.get("mean_drop_nats"), "{:.1f}")),
            ("scan AUROC of −log-likelihood", _f(ll.get("scan_auroc")))])
    return out


def generative_section(gen: dict[str, Any] | None, metrics: dict[str, Any],
                       images: dict[str, bytes]) -> str:
    """HTML of the section, or ``''`` when neither stage has produced anything for it."""
    ll = metrics.get("log_likelihood")
    if not gen and not ll:
        return ""
    gen = gen or {}
    parts = ["<h2>The VAE as a generative model</h2>"]
    if gen.get("samples"):
        parts.append(_samples(gen["samples"], images.get("samples")))
    parts.append(_interpolation(gen.get("interpolation"), images.get("interpolation")))
    parts.append(_imputation(gen.get("imputation")))
    parts.append(_loglik(gen.get("iwae"), ll))
    return "".join(parts)
