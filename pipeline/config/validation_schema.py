"""Parameters of the realistic validation set: lesions that look like real pathology on T1
(multiple-sclerosis plaques, a chronic infarct, a tumour with mass effect and oedema) and
atrophy (a negative that must stay quiet), drawn into healthy template-space scans by
:func:`pipeline.evaluation.realistic.realistic_case` to choose anomaly-detection methods.

Ranges are ``[min, max]`` pairs a value is drawn uniformly from (an integer count inclusive
of both ends); every length is in mm.

Example:
    >>> from pipeline.config.constraints import violations
    >>> p = RealisticParams(kinds=["ms", "glioma"], ms_lesions=[4, 12],
    ...     ms_diameter_mm=[3.0, 12.0], ms_periventricular_mm=10.0,
    ...     ms_periventricular_share=0.6, ms_contrast=[0.3, 1.0],
    ...     stroke_diameter_mm=[15.0, 45.0], stroke_rim_mm=2.0,
    ...     tumour_diameter_mm=[15.0, 45.0], tumour_mass_effect_mm=[1.0, 5.0],
    ...     tumour_edema_mm=[2.0, 8.0], tumour_enhancing_share=0.5, tumour_texture=0.15,
    ...     atrophy_ventricle_mm=[2.0, 6.0], atrophy_sulcal_mm=[1.0, 3.0], border_mm=1.5)
    >>> violations(p, "validation.")  # doctest: +NORMALIZE_WHITESPACE
    ["validation.kinds entries must be one of ['atrophy', 'ms', 'stroke', 'tumour'],
      got ['ms', 'glioma']"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pipeline.config.constraints import above, at_least, between, choice, each

REALISTIC_KINDS = ("ms", "stroke", "tumour", "atrophy")  # what realistic_case can draw


@dataclass(frozen=True)
class RealisticParams:
    kinds: Annotated[list[str], each(choice(*REALISTIC_KINDS), nonempty=True)]  # drawn kinds
    ms_lesions: Annotated[list[int], each(at_least(1), length=2)]  # [min, max] plaques a scan
    ms_diameter_mm: Annotated[list[float], each(above(0), length=2)]  # one plaque's diameter
    ms_periventricular_mm: Annotated[float, above(0)]  # "near the ventricles": this close
    ms_periventricular_share: Annotated[float, between(0, 1)]  # share placed near ventricles
    # a plaque's level lies midway between grey matter and CSF; many real plaques are only
    # mildly dark on T1, so a plaque moves only this share of the way there
    ms_contrast: Annotated[list[float], each(between(0, 1), length=2)]  # 0 unseen, 1 all the way
    stroke_diameter_mm: Annotated[list[float], each(above(0), length=2)]  # infarct's size
    stroke_rim_mm: Annotated[float, at_least(0)]  # gliotic rim around the CSF-like cavity
    tumour_diameter_mm: Annotated[list[float], each(above(0), length=2)]  # the mass (no oedema)
    tumour_mass_effect_mm: Annotated[list[float], each(at_least(0), length=2)]  # tissue push
    tumour_edema_mm: Annotated[list[float], each(at_least(0), length=2)]  # oedema's reach
    tumour_enhancing_share: Annotated[float, between(0, 1)]  # share with a bright rim
    tumour_texture: Annotated[float, at_least(0)]  # texture peak, × white matter level
    atrophy_ventricle_mm: Annotated[list[float], each(at_least(0), length=2)]  # ventricles grow
    atrophy_sulcal_mm: Annotated[list[float], each(at_least(0), length=2)]  # cortex thins
    border_mm: Annotated[float, above(0)]  # width of every soft border


@dataclass(frozen=True)
class ValidationParams:
    scans: Annotated[int, at_least(0)]  # calibration scans that get each kind (0: all)
    lesions: RealisticParams
