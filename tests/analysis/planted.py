"""The planted dose response of a simulated patient, for checking the readout against it.

The simulator plants a drug model (for the ADC: a kill rate with an EC50, a payload, a
bystander effect), not a GR curve: the GR50 a chip should measure depends on the exposure
schedule. The *planted* GR curve is therefore what the patient's tumoroids do under the
run's own schedule, measured without the chip's sampling error: every tumoroid of the
patient (all chambers, ~320) is exposed to each tested concentration, by re-simulating the
patient (same seed) with the concentrations rotated over the chambers, and the GR of the
typical tumoroid is computed from the simulator's true volumes and fitted with the
analysis's own fit. A chip with ~40 tumoroids per chamber then measures this curve with
the error of its imaging and its sampling, which is what the issue bounds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from chipctl.analysis.gr import chamber_fold, fit_curve, gr_max, gr_values
from simulator.biology import Biology, TumoroidTruth, build_reference_biology
from simulator.world import World

#: Step of the re-simulation, s (the run's biology advances in the same order).
STEP_S = 600.0


def resimulate(
    seed: int,
    delivered: Callable[[], dict[str, np.ndarray]],
    now: dict[str, float],
    marks_s: tuple[float, ...],
) -> tuple[Biology, dict[float, TumoroidTruth]]:
    """Re-simulate patient ``seed``'s tumoroids and return their truth at ``marks_s``.

    ``delivered`` gives each drug's concentration per chamber at ``now["t"]`` (set here
    before each step), as the simulated chip hands it to the biology.
    """
    bio = build_reference_biology(World(seed), delivered, seed=seed, add_to_world=False)
    grid = np.union1d(np.arange(0.0, max(marks_s), STEP_S), marks_s)
    truth = {}
    for a, b in itertools.pairwise(grid):
        now["t"] = a
        bio.step(a, b)
        bio.sync()
        if b in marks_s:
            truth[float(b)] = bio.tumoroids()
    return bio, truth


@dataclass(frozen=True)
class Planted:
    """The planted GR curve at the tested concentrations.

    Attributes:
        conc_nm: the tested concentrations (ascending).
        gr: the GR of the whole patient at each.
        gr50_nm: where the fitted curve crosses 0.5 (inf if never).
        gr_max: the lowest GR among the two highest concentrations.
    """

    conc_nm: np.ndarray
    gr: np.ndarray
    gr50_nm: float
    gr_max: float


def planted_response(
    seed: int,
    species: str,
    t_s: np.ndarray,
    chamber_nm: np.ndarray,
    conc_nm: np.ndarray,
    t0_s: float,
    t1_s: float,
    *,
    viable: bool = True,
) -> Planted:
    """Return the patient's planted GR curve under the run's exposure schedule.

    Args:
        seed: the run's seed (it chooses the patient).
        species: the drug.
        t_s: times of the run's chip telemetry.
        chamber_nm: the concentration each chamber received over ``t_s``, shape
            ``(n_chambers, len(t_s))`` (the simulator's own record).
        conc_nm: the concentrations to test (the readout's, one per treated chamber).
        t0_s: the drug's arrival (GR's ``x0`` time), as the readout took it.
        t1_s: the readout time.
        viable: the readout's end amounts are live volumes (a stained readout).
    """
    n_chambers = chamber_nm.shape[0]
    top = int(np.argmax(chamber_nm.max(axis=1)))
    shape = chamber_nm[top] / max(float(chamber_nm[top].max()), 1e-300)
    levels = np.concatenate([[0.0], np.sort(np.asarray(conc_nm, dtype=np.float64))])
    if levels.size > n_chambers:
        raise ValueError(f"{levels.size} levels for {n_chambers} chambers")
    levels = np.concatenate([levels, np.zeros(n_chambers - levels.size)])  # extra controls
    x0: dict[int, list[np.ndarray]] = {i: [] for i in range(levels.size)}
    x1: dict[int, list[np.ndarray]] = {i: [] for i in range(levels.size)}
    for shift in range(n_chambers):
        level_of = [(k + shift) % n_chambers for k in range(n_chambers)]
        now = {"t": 0.0}

        def delivered(
            level_of: list[int] = level_of, now: dict[str, float] = now
        ) -> dict[str, np.ndarray]:
            factor = float(np.interp(now["t"], t_s, shape))
            return {species: np.array([levels[i] * factor for i in level_of])}

        bio, truth = resimulate(seed, delivered, now, (t0_s, t1_s))
        # as the readout measures them: brightfield volume at the start, the stained live
        # volume at a viable readout
        state = {
            t0_s: truth[t0_s].volume_um3,
            t1_s: truth[t1_s].live_volume_um3 if viable else truth[t1_s].volume_um3,
        }
        for k in range(n_chambers):
            sel = bio.chamber == k
            x0[level_of[k]].append(state[t0_s][sel])
            x1[level_of[k]].append(state[t1_s][sel])
    fold = {i: chamber_fold(np.concatenate(x0[i]), np.concatenate(x1[i])) for i in x0}
    untreated = [i for i in fold if levels[i] == 0.0]
    control = chamber_fold(
        np.concatenate([np.concatenate(x0[i]) for i in untreated]),
        np.concatenate([np.concatenate(x1[i]) for i in untreated]),
    )
    treated = [i for i in range(levels.size) if levels[i] > 0.0]
    conc = levels[treated]
    gr = gr_values(np.array([fold[i] for i in treated]), control)
    fit = fit_curve(conc, gr)
    return Planted(conc, gr, fit.crossing_nm(0.5), gr_max(conc, gr))


def within_factor(measured: float, planted: float, factor: float) -> bool:
    """Tell whether ``measured`` is within ``factor`` of ``planted`` (both inf counts)."""
    if math.isinf(planted) or math.isinf(measured):
        return math.isinf(planted) and math.isinf(measured)
    return planted / factor <= measured <= planted * factor
