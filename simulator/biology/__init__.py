"""Tumoroid biology: growth, necrotic core, fibroblasts, drug effects, ground truth.

Public API (see each module for the model equations, parameters and sources):

* :class:`Biology` -- the world component (:mod:`simulator.biology.population`);
* :func:`build_reference_biology` -- a seeded patient with the reference drug panel;
* drug models :class:`CytostaticDrug`, :class:`CytotoxicDrug`, :class:`AdcDrug` and the
  GR curve :class:`GRParams` (:mod:`simulator.biology.drugs`);
* growth functions (:mod:`simulator.biology.growth`) and :class:`ChamberLayout`.

The truth accessors (:meth:`Biology.tumoroids`, :meth:`Biology.effective_gr_params`, ...)
are for tests and for validating the analysis; analysis code must never read them.
"""

from simulator.biology.drugs import AdcDrug, CytostaticDrug, CytotoxicDrug, Drug, GRParams
from simulator.biology.layout import ChamberLayout
from simulator.biology.population import (
    Biology,
    Exposure,
    FibroblastLayout,
    SeedingParams,
    TumoroidTruth,
)
from simulator.biology.reference import (
    PatientProfile,
    build_reference_biology,
    draw_patient,
    reference_drugs,
)

__all__ = [
    "AdcDrug",
    "Biology",
    "ChamberLayout",
    "CytostaticDrug",
    "CytotoxicDrug",
    "Drug",
    "Exposure",
    "FibroblastLayout",
    "GRParams",
    "PatientProfile",
    "SeedingParams",
    "TumoroidTruth",
    "build_reference_biology",
    "draw_patient",
    "reference_drugs",
]
