"""A reference patient: drugs with default potencies and a seeded tumoroid population.

``--seed`` chooses the patient (its growth, HER2 status, drug sensitivity and CAF ratio)
and the tumoroids. Inter-patient spreads are engineering assumptions [A] around the
defaults of domain reference 8.6; potencies are order-of-magnitude values (2.6) that the
reference itself says to calibrate per patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator.biology.drugs import DAY_S, AdcDrug, CytostaticDrug, CytotoxicDrug, Drug, GRParams
from simulator.biology.layout import ChamberLayout
from simulator.biology.population import Biology, Exposure, SeedingParams
from simulator.world import World

__all__ = [
    "IGG_NM_PER_UG_ML",
    "PatientProfile",
    "build_reference_biology",
    "draw_patient",
    "reference_drugs",
]

#: IgG/ADC: 1 ug/mL = 6.8 nM (148-150 kDa) [D, 2.6].
IGG_NM_PER_UG_ML = 6.8


@dataclass(frozen=True)
class PatientProfile:
    """What differs between patients.

    Attributes:
        doubling_median_s: median tumoroid doubling time: 3.5 d x lognormal(sigma 0.3) [A,
            8.6; PDO doubling 2-7 d, 2.2].
        her2_positive: HER2 status (P = 0.7 in this simulated cohort [A]).
        antigen_positive_fraction: fraction of HER2+ tumoroids (0.9 if HER2+, else 0) [A].
        sensitivity: multiplier of every EC50, lognormal(sigma 0.5) [A].
        caf_ratio: CAF : tumour cell ratio, U(0.5, 2) [A, 2.4].
    """

    doubling_median_s: float
    her2_positive: bool
    antigen_positive_fraction: float
    sensitivity: float
    caf_ratio: float


def draw_patient(rng: np.random.Generator) -> PatientProfile:
    """Draw a patient from the simulated cohort."""
    her2 = bool(rng.random() < 0.7)
    return PatientProfile(
        doubling_median_s=3.5 * DAY_S * float(np.exp(0.3 * rng.standard_normal())),
        her2_positive=her2,
        antigen_positive_fraction=0.9 if her2 else 0.0,
        sensitivity=float(np.exp(0.5 * rng.standard_normal())),
        caf_ratio=float(rng.uniform(0.5, 2.0)),
    )


def reference_drugs(patient: PatientProfile | None = None) -> list[Drug]:
    """The reference drug panel with default potencies (domain reference 2.6, 8.6).

    * ``trastuzumab`` (cytostatic): GR_inf 0.5 if HER2+ else 1.0, GEC50 0.5 ug/mL = 3.4 nM,
      h 1.5 [L/A];
    * ``paclitaxel`` (cytotoxic): EC50 5 nM [V, R47];
    * ``mmae`` (free payload, cytotoxic): EC50 0.5 nM [L, R41];
    * ``t-vc-mmae`` (ADC): EC50 50 ng/mL = 0.34 nM [L, R45], DAR 3.5 [V, R43],
      internalisation/degradation t1/2 10/20 h [V, R37], MMAE efflux 5 h [A].

    Args:
        patient: scales EC50s by ``sensitivity`` and sets the trastuzumab GR_inf from the
            HER2 status; ``None`` gives the nominal HER2+ panel.
    """
    sens = 1.0 if patient is None else patient.sensitivity
    her2 = True if patient is None else patient.her2_positive
    return [
        CytostaticDrug(
            "trastuzumab",
            GRParams(gr_inf=0.5 if her2 else 1.0, gec50_nm=0.5 * IGG_NM_PER_UG_ML * sens, hill=1.5),
        ),
        CytotoxicDrug("paclitaxel", ec50_nm=5.0 * sens),
        CytotoxicDrug("mmae", ec50_nm=0.5 * sens),
        AdcDrug("t-vc-mmae", ec50_nm=0.34 * sens, payload_ec50_nm=0.5 * sens),
    ]


def build_reference_biology(
    world: World,
    exposure: Exposure,
    seed: int | None = None,
    *,
    drugs: Sequence[Drug] | None = None,
    caf_ratio: Sequence[float] | None = None,
    seeding: SeedingParams | None = None,
    layout: ChamberLayout | None = None,
    add_to_world: bool = True,
) -> Biology:
    """Make a patient's tumoroid population and register it with ``world``.

    Args:
        world: the world; its :attr:`World.rng` is used when ``seed`` is ``None``.
        exposure: drug name -> nM per chamber (wired to the drug-transport model).
        seed: chooses the patient and the tumoroids.
        drugs: drug models; default :func:`reference_drugs` for the patient.
        caf_ratio: per-chamber CAF ratio; default the patient's ratio in every chamber.
        seeding: seeding distributions; default :class:`SeedingParams` with the patient's
            doubling time and antigen-positive fraction.
        layout: chamber geometry.
        add_to_world: register the population as a world component.

    Returns:
        The population; ``metadata["patient"]`` holds the :class:`PatientProfile`.
    """
    rng = np.random.default_rng(seed) if seed is not None else world.rng
    patient = draw_patient(rng)
    lay = layout or ChamberLayout()
    if seeding is None:
        seeding = SeedingParams(
            doubling_median_s=patient.doubling_median_s,
            antigen_positive_fraction=patient.antigen_positive_fraction,
        )
    bio = Biology(
        exposure,
        reference_drugs(patient) if drugs is None else drugs,
        rng,
        layout=lay,
        seeding=seeding,
        caf_ratio=[patient.caf_ratio] * lay.n_chambers if caf_ratio is None else caf_ratio,
        t_seed_s=world.t_s or 0.0,
    )
    bio.metadata["patient"] = patient
    bio.metadata["seed"] = seed
    if add_to_world:
        world.add(bio)
    return bio
