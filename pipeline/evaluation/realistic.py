"""Realistic lesions and atrophy, drawn into healthy template-space T1 scans.

Tissue levels (3-class Otsu; CSF's from the ventricles: deep, central, dark) come from the
scan; what a lesion replaces gets the scan's noise level. ``ms``: soft ovoid plaques in white
matter, a share periventricular, elongated away from the ventricles. ``stroke``: a lumpy wedge
from deep white matter to the cortex, a CSF-like cavity in a gliotic rim. ``tumour``: mass
effect, a dark core, a bright (enhancing) or dark rim, texture, oedema; truth the whole tumour
(BraTS). ``atrophy``: larger ventricles, thinner cortex; no truth.

Example:
    >>> from pipeline.config.validation_schema import RealisticParams
    >>> r = np.sqrt(sum(x ** 2 for x in np.meshgrid(*[np.linspace(-1, 1, 36)] * 3)))
    >>> brain, image = r < 0.9, np.select([r < 0.25, r < 0.7, r < 0.9], [0.15, 0.85, 0.5])
    >>> p = RealisticParams(kinds=list(KINDS), ms_lesions=[3, 6], ms_diameter_mm=[4, 10],
    ...     ms_periventricular_mm=10, ms_periventricular_share=0.6, ms_contrast=[0.3, 1],
    ...     stroke_diameter_mm=[15, 30], stroke_rim_mm=2, tumour_diameter_mm=[15, 30],
    ...     tumour_mass_effect_mm=[1, 5], tumour_edema_mm=[2, 8], tumour_enhancing_share=0.5,
    ...     tumour_texture=0.15, atrophy_ventricle_mm=[2, 6], atrophy_sulcal_mm=[1, 3],
    ...     border_mm=1.5)
    >>> case = realistic_case(image, brain, "stroke", p, np.random.default_rng(0), 2.0)
    >>> case.image.dtype, bool(case.truth.any()), bool((case.image[~brain] == 0).all())
    (dtype('float32'), True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu

from pipeline.config.validation_schema import REALISTIC_KINDS, RealisticParams

KINDS = REALISTIC_KINDS  # ("ms", "stroke", "tumour", "atrophy")

_SMOOTH_MM = 1.5  # sigma of the smoothing that classifies tissue and separates the noise
_VENTRICLE_DEPTH = 0.3  # ventricles lie deeper than this share of the brain's deepest voxel
_VENTRICLE_CENTRE = 0.5  # ... their centre within this share of the brain's radius of its own
_VENTRICLE_SHARE = 0.1  # ... and each component holds this share of the largest one at least
_LUMP_CELL = 0.35  # a lesion's lumps vary over this share of its diameter
# how much each shape varies: a share of its radius (of the reach of oedema, the mm of atrophy)
_LUMPS = {"ms": 0.2, "stroke": 0.5, "tumour": 0.3, "edema": 0.5, "atrophy": 0.5}
_ATROPHY_CELL_MM = 30.0  # atrophy varies regionally over this distance
_BLUR = 0.4  # gaussian sigma of a blurred hard mask, × border_mm (a ramp's equivalent)
_MS_ELONGATION = (1.0, 2.5)  # long / short axis of a plaque
_STROKE_DEPTH = 0.3  # infarct centre this share of its diameter beneath the brain's surface
_STROKE_CONE_DEG = (30.0, 60.0)  # half-angle of the infarct's wedge, apex one radius deeper
_TUMOUR_CORE = (0.3, 0.7)  # necrotic / cystic core's radius, share of the tumour's
_TUMOUR_REACH = 3.0  # mass effect fades to nothing this many tumour radii from the centre
_TUMOUR_PUSH_MAX = 0.5  # mass effect at most this share of the radius (a one-to-one warp)
_TUMOUR_DEPTH = 0.6  # tumour centre at most needs this share of the brain's deepest voxel
_TEXTURE_MM = 3.0  # correlation length (sigma) of the tumour's texture (peak: tumour_texture)
# drawn levels, this far from one tissue level to another: an MS plaque's (grey to CSF), a
# gliotic rim (CSF to grey), a tumour's core (CSF to grey), its dark rim (grey to CSF), its
# enhancing rim (above white by this × (white - grey)), oedema (white matter to grey)
_LEVEL = {"ms": 0.5, "gliosis": 0.5, "core": 0.3, "dark_rim": 0.3, "bright_rim": 0.4, "edema": 0.5}


@dataclass
class RealisticCase:
    """One drawn case: the image, the lesion truth and what was drawn."""
    kind: str
    image: np.ndarray  # float32, the input's shape; 0 outside the brain
    truth: np.ndarray  # bool lesion mask (all False for "atrophy")
    described: dict[str, Any]  # JSON-able: counts, diameters, contrasts, mass effect, ...


@dataclass
class _Scan:
    """A healthy scan and what the lesions need to know of it."""
    image: np.ndarray  # float32, 0 outside the brain
    brain: np.ndarray  # bool
    spacing: float  # mm
    levels: tuple[float, float, float]  # CSF, grey and white matter
    smooth: np.ndarray  # smoothed within the brain: classifies tissue, moved by lesions
    noise: float  # noise sigma, robust (MAD of the residual in white matter)
    depth: np.ndarray  # mm beneath the brain's outer surface
    white: np.ndarray  # bool, white-matter-bright
    dark: np.ndarray  # bool, CSF-dark
    ventricles: np.ndarray  # bool; may be empty

    def box(self, centre: np.ndarray, radius_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
        """The box of voxels within ``radius_mm`` of ``centre``; their mm offsets (3, *box)."""
        half = int(np.ceil(radius_mm / self.spacing)) + 1
        box = tuple(slice(max(c - half, 0), min(c + half + 1, n))
                    for c, n in zip(centre, self.image.shape, strict=True))
        offsets = (np.mgrid[box] - centre[:, None, None, None]) * self.spacing
        return box, offsets.astype(np.float32)

    def lumps(self, shape: tuple[int, ...], cell_mm: float, rng: np.random.Generator) -> np.ndarray:
        """A smooth random field in (-1, 1) over ``shape`` that varies over ``cell_mm``."""
        coarse = rng.normal(size=[int(np.ceil(n * self.spacing / cell_mm)) + 1 for n in shape])
        field = ndimage.zoom(coarse, np.divide(shape, coarse.shape), order=3, mode="nearest")
        return np.tanh(field[tuple(slice(0, n) for n in shape)])

    def darken(self, box: tuple[slice, ...], weight: np.ndarray, level: Any,
               rng: np.random.Generator) -> np.ndarray:
        """``box`` of the image moved by ``weight`` to ``level`` with fresh noise; no brighter."""
        level = level + self.noise * rng.normal(size=weight.shape)
        return self.image[box] + weight * np.minimum(level - self.image[box], 0)


def _scan(image: np.ndarray, brain: np.ndarray, spacing: float) -> _Scan:
    """The tissue model of a healthy scan; CSF's level from the ventricles where found."""
    image = np.where(brain, np.nan_to_num(image), 0).astype(np.float32)
    sigma = _SMOOTH_MM / spacing
    weight = np.maximum(ndimage.gaussian_filter(brain.astype(np.float32), sigma), 1e-3)
    smooth = np.where(brain, ndimage.gaussian_filter(image, sigma) / weight, 0)
    # the means of a 3-class Otsu split (a ValueError for a brain of one intensity)
    classes = np.digitize(smooth[brain], threshold_multiotsu(smooth[brain], classes=3))
    csf, gm, wm = (float(smooth[brain][classes == k].mean()) for k in range(3))
    white = brain & (smooth > (gm + wm) / 2)
    s = _Scan(image, brain, spacing, (csf, gm, wm), smooth,
              1.4826 * float(np.median(np.abs(image - smooth)[white if white.any() else brain])),
              ndimage.distance_transform_edt(brain) * spacing, white,
              brain & (smooth < (csf + gm) / 2), np.zeros(brain.shape, bool))
    # ventricles: deep central CSF-dark components, thin sheets (fissures) opened away
    labels, n = ndimage.label(ndimage.binary_opening(
        s.dark & (s.depth > _VENTRICLE_DEPTH * s.depth.max())))
    index, ones = np.arange(1, n + 1), np.ones(brain.shape, np.float32)
    sizes = ndimage.sum_labels(ones, labels, index)
    centres = np.array(ndimage.center_of_mass(ones, labels, index)).reshape(-1, 3)
    reach = _VENTRICLE_CENTRE * (3 * brain.sum() / (4 * np.pi)) ** (1 / 3)  # × a ball's radius
    near = np.linalg.norm(centres - np.argwhere(brain).mean(0), axis=1) <= reach
    keep = index[near & (sizes >= _VENTRICLE_SHARE * sizes[near].max(initial=0))]
    s.ventricles = ndimage.binary_dilation(np.isin(labels, keep)) & s.dark
    if s.ventricles.any():  # partial volume lifts the level of the darkest class
        s.levels = (min(csf, float(np.median(image[s.ventricles]))), gm, wm)
    return s


def _soft(outside_mm: np.ndarray, border_mm: float) -> np.ndarray:
    """Weight 1 inside, 0 outside, a linear ramp ``border_mm`` wide across the boundary."""
    return np.clip(0.5 - outside_mm / border_mm, 0.0, 1.0).astype(np.float32)


def _pick(rng: np.random.Generator, *pools: np.ndarray) -> np.ndarray:
    """A random voxel of the first non-empty pool."""
    where = next(w for w in (np.flatnonzero(p) for p in pools) if w.size)
    return np.array(np.unravel_index(where[rng.integers(where.size)], pools[0].shape))


def _direction(rng: np.random.Generator, field: np.ndarray | None = None,
               at: np.ndarray | None = None) -> np.ndarray:
    """Unit gradient of ``field`` at voxel ``at``; a random direction without one."""
    grad = rng.normal(size=3) if field is None or at is None else np.array(
        [field[tuple(np.minimum(at + e, np.array(field.shape) - 1))]
         - field[tuple(np.maximum(at - e, 0))] for e in np.eye(3, dtype=int)])
    norm = float(np.linalg.norm(grad))
    return grad / norm if np.isfinite(norm) and norm > 0 else _direction(rng)


def _draw(rng: np.random.Generator, pair: Sequence[float]) -> float:
    return float(rng.uniform(min(pair), max(pair)))


def _ms(s: _Scan, p: RealisticParams, rng: np.random.Generator) -> tuple[Any, ...]:
    out, truth, (csf, gm, _) = s.image.copy(), np.zeros(s.brain.shape, bool), s.levels
    to_vent = ndimage.distance_transform_edt(~s.ventricles) * s.spacing \
        if s.ventricles.any() else np.full(s.brain.shape, np.inf)
    near = s.white & (to_vent <= p.ms_periventricular_mm)
    plaques = []
    for _ in range(int(rng.integers(min(p.ms_lesions), max(p.ms_lesions) + 1))):
        radius = _draw(rng, p.ms_diameter_mm) / 2
        peri = bool(near.any()) and rng.random() < p.ms_periventricular_share
        deep = s.white & (s.depth >= radius + p.border_mm)
        centre = _pick(rng, near if peri else deep, s.white, s.brain)
        axis = _direction(rng, to_vent, centre) if peri else _direction(rng)
        stretch = _draw(rng, _MS_ELONGATION)
        along, across = radius * stretch ** (2 / 3), radius * stretch ** (-1 / 3)
        box, d = s.box(centre, along * (1 + _LUMPS["ms"]) + p.border_mm)
        a = np.tensordot(axis, d, axes=1)
        rel = np.sqrt((a / along) ** 2 + ((d ** 2).sum(0) - a ** 2) / across ** 2)
        rel *= 1 + _LUMPS["ms"] * s.lumps(rel.shape, _LUMP_CELL * 2 * along, rng)
        weight = _soft((rel - 1) * radius, p.border_mm) * ~(s.ventricles | s.dark)[box]
        contrast = _draw(rng, p.ms_contrast)
        gap = np.maximum(s.smooth[box] - gm - _LEVEL["ms"] * (csf - gm), 0)  # to the level
        out[box] = np.minimum(out[box], s.image[box] - contrast * weight * gap)
        truth[box] |= weight > 0.5
        plaques.append({"diameter_mm": round(2 * radius, 2), "elongation": round(stretch, 2),
                        "contrast": round(contrast, 3), "periventricular": peri,
                        "centre_voxel": centre.tolist()})
    return out, truth, {"lesions": len(plaques), "plaques": plaques,
                        "periventricular": sum(q["periventricular"] for q in plaques)}


def _stroke(s: _Scan, p: RealisticParams, rng: np.random.Generator) -> tuple[Any, ...]:
    diameter, (csf, gm, _) = _draw(rng, p.stroke_diameter_mm), s.levels
    radius, tissue = diameter / 2, s.brain & ~s.ventricles & ~s.dark
    shallow = np.abs(s.depth - _STROKE_DEPTH * diameter) <= s.spacing
    centre = _pick(rng, tissue & shallow, tissue, s.brain)
    outward = -_direction(rng, s.depth, centre)
    box, d = s.box(centre, radius * (1 + _LUMPS["stroke"] / 2) + 2 * p.border_mm)
    dist = np.sqrt((d ** 2).sum(0))
    lumps = s.lumps(dist.shape, _LUMP_CELL * diameter, rng)
    half_angle = np.deg2rad(_draw(rng, _STROKE_CONE_DEG))
    apex = d + (outward * radius)[:, None, None, None]  # from the wedge's tip, a radius deeper
    cosine = np.tensordot(outward, apex, axes=1) / np.maximum(np.sqrt((apex ** 2).sum(0)), 1e-6)
    region = (dist <= radius * (1 + _LUMPS["stroke"] / 2 * lumps)) \
        & (cosine >= np.cos(half_angle)) & s.brain[box] & ~s.ventricles[box]
    cavity = region & (ndimage.distance_transform_edt(region) * s.spacing > p.stroke_rim_mm)
    w_all, w_cavity = (ndimage.gaussian_filter(m.astype(np.float32), _BLUR * p.border_mm
                                               / s.spacing) for m in (region, cavity))
    gliosis = csf + _LEVEL["gliosis"] * (gm - csf)  # the rim's level, the cavity's is CSF's
    level = (w_cavity * csf + (w_all - w_cavity) * gliosis) / np.maximum(w_all, 1e-6)
    out, truth = s.image.copy(), np.zeros(s.brain.shape, bool)
    out[box] = s.darken(box, w_all * s.brain[box], level, rng)
    truth[box] = (w_all > 0.5) & s.brain[box]
    return out, truth, {"diameter_mm": round(diameter, 2), "rim_mm": p.stroke_rim_mm,
                        "cone_deg": round(float(np.rad2deg(half_angle)), 1),
                        "cavity_voxels": int(cavity.sum()), "centre_voxel": centre.tolist()}


def _tumour(s: _Scan, p: RealisticParams, rng: np.random.Generator) -> tuple[Any, ...]:
    (csf, gm, wm), radius = s.levels, _draw(rng, p.tumour_diameter_mm) / 2
    push = min(_draw(rng, p.tumour_mass_effect_mm), _TUMOUR_PUSH_MAX * radius)
    edema_mm, cell = _draw(rng, p.tumour_edema_mm), _LUMP_CELL * 2 * radius
    deep = s.depth >= min(radius + edema_mm, _TUMOUR_DEPTH * s.depth.max())
    centre = _pick(rng, s.white & deep, s.brain & deep, s.brain)
    box, d = s.box(centre, _TUMOUR_REACH * radius + p.border_mm)
    # mass effect: tissue pushed outward by ``push`` mm at the surface, falling as 1/r² beyond
    dist = np.maximum(np.sqrt((d ** 2).sum(0)), 1e-6)
    taper = np.clip((_TUMOUR_REACH * radius - dist) / ((_TUMOUR_REACH - 1) * radius), 0, 1)
    shift = np.where(dist < radius, push * dist / radius, push * (radius / dist) ** 2 * taper)
    source = np.indices(dist.shape, dtype=np.float32) - d * (shift / dist / s.spacing)
    image, local, pulled = (ndimage.map_coordinates(v[box].astype(np.float32), source, order=1)
                            for v in (s.image, s.smooth, s.brain))
    keep = s.brain[box] & (pulled > 0.5)  # tissue only where tissue was pulled from
    image, local = np.where(keep, image, s.image[box]), np.where(keep, local, s.smooth[box])
    inside, shape = s.brain[box], local.shape
    rel = dist / radius / (1 + _LUMPS["tumour"] * s.lumps(shape, cell, rng))
    core_share = _draw(rng, _TUMOUR_CORE)
    w_tumour = _soft((rel - 1) * radius, p.border_mm) * inside
    w_core = np.minimum(_soft((rel - core_share) * radius, p.border_mm), w_tumour)
    reach = 1 + edema_mm / radius * (1 + _LUMPS["edema"] * s.lumps(shape, cell, rng))
    edema = ((rel <= reach) & (local > (gm + wm) / 2)) | (w_tumour > 0.5)
    w_all = np.maximum(ndimage.gaussian_filter((edema & inside).astype(np.float32),
                                               _BLUR * p.border_mm / s.spacing), w_tumour)
    enhancing = bool(rng.random() < p.tumour_enhancing_share)
    rim = wm + _LEVEL["bright_rim"] * (wm - gm) if enhancing else \
        gm + _LEVEL["dark_rim"] * (csf - gm)
    grain = ndimage.gaussian_filter(rng.normal(size=shape), _TEXTURE_MM / s.spacing)
    texture = p.tumour_texture * wm * grain / max(float(np.abs(grain).max()), 1e-6)
    swollen = local - _LEVEL["edema"] * np.maximum(local - gm, 0)
    change = (w_core * (csf + _LEVEL["core"] * (gm - csf)) + (w_tumour - w_core) * rim
              + w_tumour * (texture + s.noise * rng.normal(size=shape) - image)
              + (w_all - w_tumour) * (swollen - local))  # the tumour replaced, oedema moved
    out, truth = s.image.copy(), np.zeros(s.brain.shape, bool)
    out[box] = np.where(inside, image + change, 0)
    truth[box] = (w_all > 0.5) & inside
    return out, truth, {"diameter_mm": round(2 * radius, 2), "mass_effect_mm": round(push, 2),
                        "edema_mm": round(edema_mm, 2), "enhancing": enhancing,
                        "core_share": round(core_share, 2), "centre_voxel": centre.tolist()}


def _atrophy(s: _Scan, p: RealisticParams, rng: np.random.Generator) -> tuple[Any, ...]:
    (csf, gm, _), weight = s.levels, np.zeros(s.image.shape, np.float32)
    ventricle_mm, sulcal_mm = _draw(rng, p.atrophy_ventricle_mm), _draw(rng, p.atrophy_sulcal_mm)
    regional = 1 + _LUMPS["atrophy"] * s.lumps(s.image.shape, _ATROPHY_CELL_MM, rng)
    if s.ventricles.any() and ventricle_mm > 0:
        to_vent = ndimage.distance_transform_edt(~s.ventricles) * s.spacing
        weight = _soft(to_vent - ventricle_mm * regional, p.border_mm)
    if sulcal_mm > 0:  # grey matter beside the outer CSF or the brain's surface
        to_outer = ndimage.distance_transform_edt(s.brain & ~(s.dark & ~s.ventricles))
        cortex = _soft(to_outer * s.spacing - sulcal_mm * regional, p.border_mm)
        weight = np.maximum(weight, cortex * ~s.white)
    out = s.darken((slice(None),) * 3, weight * s.brain, csf, rng)
    added = (out < (csf + gm) / 2) & ~s.dark & s.brain  # voxels that became CSF-dark
    drawn = {"ventricle_mm": round(ventricle_mm, 2), "sulcal_mm": round(sulcal_mm, 2)}
    return out, np.zeros(s.brain.shape, bool), {**drawn, "csf_voxels_added": int(added.sum())}


def realistic_case(image: np.ndarray, brain: np.ndarray, kind: str, params: RealisticParams,
                   rng: np.random.Generator, spacing_mm: float) -> RealisticCase:
    """Draw one ``kind`` of pathology into a healthy scan, seeded only by ``rng``.

    Args:
        image: a healthy template-space T1 scan (brain roughly 0..1).
        brain: its brain mask; voxels outside it are 0 in the result, none inside it moves out.
        kind: one of :data:`KINDS`.
        params: the sizes, contrasts and shares to draw from.
        rng: the only source of randomness.
        spacing_mm: the (isotropic) voxel size.

    Returns:
        The case: float32 image, bool truth (empty for ``atrophy``), what was drawn.
    """
    mask, draw = np.asarray(brain, bool), {"ms": _ms, "stroke": _stroke, "tumour": _tumour,
                                            "atrophy": _atrophy}.get(kind)
    if draw is None or not mask.any():
        raise ValueError(f"kind {kind!r} must be one of {list(KINDS)}, the brain non-empty")
    scan = _scan(np.asarray(image, np.float32), mask, float(spacing_mm))
    out, truth, described = draw(scan, params, rng)
    result = np.where(mask, np.nan_to_num(out).clip(min(0.0, float(scan.image.min()))), 0)
    return RealisticCase(kind, result.astype(np.float32), truth & mask, {
        "kind": kind, "levels_csf_gm_wm": [round(v, 4) for v in scan.levels], **described,
        "ventricles_found": bool(scan.ventricles.any())})
