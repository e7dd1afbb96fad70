"""The simulated bench: the reference chip, its drug transport and its tumoroids, wired.

:func:`build_bench` puts together what the emulated devices live in: the pump emulators
(already registered in the world) feed the chip's inlets, the hydraulics answers with back
pressures (so a clogged chip stalls a pump), drug transport carries each syringe's contents
through the dead volumes into the 8 chambers, the tumoroids respond to the concentration
each chamber actually receives, and the synthetic microscope renders them. The order of
the world's components is the order of cause and effect: pumps, hydraulics, drug, biology.

The :meth:`SimulatedBench.truth` readout (pressures, flows, chamber concentrations) is what
a real bench cannot measure; chipctl records it in simulated run files as the simulator's
ground truth, clearly separate from what the instruments measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from simulator.biology import Biology, build_reference_biology
from simulator.chip import ReferenceChip, ReferenceFluidics, build_reference_fluidics
from simulator.microscope import CameraParams, SimMicroscope
from simulator.world import FlowSource, SyringeMechanics, World

__all__ = ["INLETS", "CameraParams", "SimulatedBench", "build_bench", "known_species"]

#: The reference chip's inlets.
INLETS = ("medium", "drug", "aux")

#: Default chip faults (zero-argument, for fault schedules): how fast a clog grows, how big a
#: leak or a bubble is.
CLOG_DOUBLING_S = 600.0
LEAK_RESISTANCE_KPA_S_UL = 50.0
BUBBLE_VOLUME_UL = 1.0


def known_species() -> list[str]:
    """Return the drug names the simulated biology responds to."""
    from simulator.biology import reference_drugs

    return sorted(d.name for d in reference_drugs())


@dataclass
class SimulatedBench:
    """The assembled simulated chip and tumoroids.

    Attributes:
        world: the shared timeline.
        fluidics: the chip's hydraulics and drug transport.
        biology: the tumoroid population.
        microscope: the synthetic microscope over the chip.
        species: the drug species present in any syringe.
    """

    world: World
    fluidics: ReferenceFluidics
    biology: Biology
    microscope: SimMicroscope
    species: tuple[str, ...] = field(default=())

    @property
    def outlet_flow_source(self) -> FlowSource:
        """Return what a flow sensor on the chip outlet measures."""
        return self.fluidics.outlet_sensor

    def truth_units(self) -> dict[str, str]:
        """Return the quantities of :meth:`truth` and their units."""
        units = {f"p_{inlet}_kpa": "kPa" for inlet in INLETS}
        units["q_outlet_ul_min"] = "uL/min"
        for chamber in range(len(self.fluidics.chip.network().chambers)):
            units[f"q_chamber{chamber + 1}_ul_min"] = "uL/min"
        for species in self.species:
            for chamber in range(len(self.fluidics.chip.network().chambers)):
                units[f"c_{_safe(species)}_chamber{chamber + 1}_nm"] = "nM"
        return units

    def truth(self) -> dict[str, float]:
        """Return the present true pressures, flows and chamber concentrations."""
        network = self.fluidics.network
        values = {f"p_{inlet}_kpa": network.inlet_pressure_kpa(inlet) for inlet in INLETS}
        values["q_outlet_ul_min"] = network.outlet_flow_ul_min()
        for chamber, q in enumerate(network.chamber_flows_ul_min()):
            values[f"q_chamber{chamber + 1}_ul_min"] = float(q)
        for species in self.species:
            conc = self.fluidics.drug.chamber_concentrations_nm(species)
            for chamber, c in enumerate(conc):
                values[f"c_{_safe(species)}_chamber{chamber + 1}_nm"] = float(c)
        return values

    # -- chip faults (zero-argument, for fault schedules) ----------------------------

    def clog(self) -> None:
        """Start a clog of the chip outlet channel (its resistance doubles every 10 min)."""
        self.fluidics.network.start_clog("outlet", CLOG_DOUBLING_S)

    def unclog(self) -> None:
        """Clear the outlet clog."""
        self.fluidics.network.clear_clog("outlet")

    def leak(self) -> None:
        """Open a leak at the chip's inlet manifold."""
        self.fluidics.network.start_leak("manifold", LEAK_RESISTANCE_KPA_S_UL)

    def bubble(self) -> None:
        """Let a 1 uL air bubble into the medium line."""
        self.fluidics.network.inject_bubble("medium", BUBBLE_VOLUME_UL)


def _safe(species: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in species.lower())


def build_bench(
    world: World,
    *,
    pumps: Mapping[str, SyringeMechanics],
    contents_nm: Mapping[str, Mapping[str, float]],
    seed: int,
    chip: ReferenceChip | None = None,
    camera: CameraParams | None = None,
) -> SimulatedBench:
    """Wire the reference chip, drug transport, tumoroids and microscope into ``world``.

    Args:
        world: the world, with the pump emulators already registered in it.
        pumps: the pump emulator feeding each inlet (``"medium"``, ``"drug"``, ``"aux"``).
        contents_nm: what each inlet's syringe holds: species -> stock concentration (nM).
        seed: chooses the patient and the tumoroids.
        chip: the chip description (the reference chip by default).
        camera: the simulated microscope's camera (a 2048 x 2048 sCMOS by default).

    Raises:
        ValueError: an unknown inlet or drug species.
    """
    for inlet in list(pumps) + list(contents_nm):
        if inlet not in INLETS:
            raise ValueError(f"no inlet {inlet!r} on the reference chip (inlets: {INLETS})")
    known = known_species()
    species: list[str] = []
    for inlet, contents in contents_nm.items():
        for name in contents:
            if name not in known:
                raise ValueError(f"unknown drug {name!r} in the {inlet} syringe (known: {known})")
            if name not in species:
                species.append(name)
    fluidics = build_reference_fluidics(world, chip, pumps=pumps)
    for name in species:
        fluidics.drug.set_species(name)
    for inlet, contents in contents_nm.items():
        fluidics.drug.set_inlet_contents(inlet, dict(contents))

    def exposure() -> dict[str, np.ndarray]:
        return {name: fluidics.drug.chamber_concentrations_nm(name) for name in species}

    biology = build_reference_biology(world, exposure, seed=seed)
    microscope = SimMicroscope(biology, seed=seed, camera=camera)
    return SimulatedBench(world, fluidics, biology, microscope, tuple(species))
