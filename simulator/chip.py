"""The reference chip: geometry and materials as frozen dataclasses, and its RC network.

The reference chip [A, built from domain reference 1.2, 1.6, 8.1, 8.6] has

* three inlets, each fed by a syringe through PTFE tubing (0.5 mm ID [L, 8.1]):
  ``"medium"`` (diluent) and ``"drug"`` feed a serial-dilution ladder
  (:mod:`simulator.physics.dilution`); ``"aux"`` (seeding, washes, stains) joins the
  medium manifold, so with the drug pump stopped its fluid reaches every chamber;
* eight culture chambers (2 mm x 0.25 mm x 10 mm = 5 uL, the 5 uL row of the residence
  table in 1.3 [A]) that, at equal medium and drug flows, receive the drug inlet
  concentration times ``f_k = 10**(-k/2)`` (half-log steps, 1 ... 3.2e-4) and equal flows;
* one outlet channel with PTFE tubing to waste and a flow sensor on it.

Dead volume per inlet (drug front delay, 1.9) = tubing volume + fitting dead volume +
on-chip distribution volume. Default flows are 20 uL/h per inlet [A, 8.6].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simulator.physics import hydraulics as hy
from simulator.physics.dilution import LadderDesign, design_serial_dilution
from simulator.physics.network import GROUND, ChamberPort, Edge, InletPort, NetworkSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simulator.drug import DrugTransport
    from simulator.fluidics import EdgeFlowSensor, FluidicNetwork
    from simulator.world import SyringeMechanics, World

__all__ = [
    "INLETS",
    "Chamber",
    "DilutionGenerator",
    "InletLine",
    "ReferenceChip",
    "ReferenceFluidics",
    "Tubing",
    "build_reference_fluidics",
]

#: Inlet names of the reference chip, in network order.
INLETS = ("medium", "drug", "aux")


@dataclass(frozen=True)
class Tubing:
    """A piece of round tubing.

    Attributes:
        length_m: length in m (0.5 m default [L, 8.1]).
        inner_diameter_m: inner diameter in m (PTFE 0.5 mm ID [L, 8.1]).
        wall_thickness_m: wall in m (1/16 inch OD tubing: (1.5875 - 0.5) / 2 mm).
        youngs_modulus_pa: wall Young's modulus in Pa (PTFE 0.5 GPa [L]).
    """

    length_m: float = 0.5
    inner_diameter_m: float = 0.5e-3
    wall_thickness_m: float = 0.54375e-3
    youngs_modulus_pa: float = hy.PTFE_YOUNGS_MODULUS_PA

    def volume_ul(self) -> float:
        """Liquid volume in uL (0.5 mm x 0.5 m holds 98 uL, domain reference 1.9)."""
        return hy.tube_volume_ul(self.length_m, self.inner_diameter_m)

    def resistance_kpa_s_ul(self, viscosity_pa_s: float) -> float:
        """Hagen-Poiseuille resistance in kPa s/uL."""
        r = hy.tube_resistance_pa_s_m3(self.length_m, self.inner_diameter_m, viscosity_pa_s)
        return hy.pa_s_m3_to_kpa_s_ul(r)

    def compliance_ul_kpa(self) -> float:
        """Wall compliance in uL/kPa (thin-wall estimate, 1.6)."""
        c = hy.tube_compliance_m3_pa(
            self.length_m, self.inner_diameter_m, self.wall_thickness_m, self.youngs_modulus_pa
        )
        return hy.m3_pa_to_ul_kpa(c)


@dataclass(frozen=True)
class InletLine:
    """Syringe, tubing and fitting between a pump and a chip port.

    Attributes:
        tubing: the line.
        fitting_dead_volume_ul: connectors and port, uL [A].
        syringe_fill_ul: liquid in the syringe, uL (BD 5 mL [L, 8.1]).
        stopper_compliance_ul_kpa: plunger seal compliance, uL/kPa [A] (see
            :func:`simulator.physics.hydraulics.syringe_compliance_m3_pa`).
    """

    tubing: Tubing = field(default_factory=Tubing)
    fitting_dead_volume_ul: float = 2.0
    syringe_fill_ul: float = 5000.0
    stopper_compliance_ul_kpa: float = 0.01

    def syringe_node_compliance_ul_kpa(self) -> float:
        """Syringe (liquid + stopper) plus tubing wall compliance, lumped at the syringe."""
        syringe = hy.syringe_compliance_m3_pa(
            self.syringe_fill_ul * 1e-9, hy.ul_kpa_to_m3_pa(self.stopper_compliance_ul_kpa)
        )
        return hy.m3_pa_to_ul_kpa(syringe) + self.tubing.compliance_ul_kpa()


@dataclass(frozen=True)
class Chamber:
    """A culture chamber (gel with tumoroids under a well-mixed medium volume).

    Attributes:
        width_m: width in m.
        height_m: height in m.
        length_m: length in m.
    """

    width_m: float = 2.0e-3
    height_m: float = 0.25e-3
    length_m: float = 10.0e-3

    def volume_ul(self) -> float:
        """Well-mixed volume in uL (5 uL by default)."""
        return self.width_m * self.height_m * self.length_m * 1e9

    def resistance_kpa_s_ul(self, viscosity_pa_s: float) -> float:
        """Rectangular-channel resistance (series form, 1.1) in kPa s/uL."""
        r = hy.rectangular_channel_resistance_pa_s_m3(
            self.length_m, self.width_m, self.height_m, viscosity_pa_s
        )
        return hy.pa_s_m3_to_kpa_s_ul(r)

    def wall_shear_pa_per_ul_min(self, viscosity_pa_s: float) -> float:
        """Floor wall shear per unit flow, ``6 mu / (w h^2)`` (1.4), in Pa per uL/min."""
        return hy.rectangular_wall_shear_pa(
            hy.ul_min_to_m3_s(1.0), self.width_m, self.height_m, viscosity_pa_s
        )

    def compliance_ul_kpa(self, youngs_modulus_pa: float) -> float:
        """PDMS ceiling compliance in uL/kPa."""
        c = hy.pdms_channel_compliance_m3_pa(self.width_m, self.length_m, youngs_modulus_pa)
        return hy.m3_pa_to_ul_kpa(c)


@dataclass(frozen=True)
class DilutionGenerator:
    """The serial-dilution ladder, specified by its design point.

    Attributes:
        n_chambers: chambers fed by the ladder.
        dilution_ratio: fraction ratio between neighbouring chambers (half-log [A]).
        design_inlet_flow_ul_min: flow of each inlet at the design point (20 uL/h [A, 8.6]).
        manifold_pressure_kpa: medium manifold pressure at the design point [A]; normal
            chip pressures are Pa to kPa (1.1), so 20 uL/min washes stay below the
            50 kPa stop threshold of section 5.
        internal_volume_ul: on-chip volume from a port to a chamber [A].
        channel_width_m: ladder channel width (for PDMS compliance of its nodes) [A].
        channel_length_per_node_m: ladder channel length per mixing node [A].
    """

    n_chambers: int = 8
    dilution_ratio: float = 10.0**-0.5
    design_inlet_flow_ul_min: float = 20.0 / 60.0
    manifold_pressure_kpa: float = 0.5
    internal_volume_ul: float = 2.0
    channel_width_m: float = 100e-6
    channel_length_per_node_m: float = 20e-3


@dataclass(frozen=True)
class ReferenceChip:
    """The reference tumour chip; every default is tagged in the field docs.

    Attributes:
        viscosity_pa_s: medium at 37 degC, 0.78 mPa s [L, 8.1].
        medium: medium inlet line.
        drug: drug inlet line.
        aux: auxiliary (exchanger) inlet line, 0.25 m [A].
        outlet_tubing: outlet line to waste, 0.3 m [A].
        outlet_sensor_distance_m: outlet tubing length from chip to flow sensor [A].
        chamber: chamber geometry (all chambers alike).
        dilution: dilution ladder.
        manifold_width_m: medium manifold / outlet channel width (0.5 mm [A, 1.2]).
        manifold_length_m: manifold / outlet channel length (10 mm [A, 1.2]).
        pdms_youngs_modulus_pa: PDMS modulus [L].
        burst_pressure_kpa: pressure rating, PDMS-glass bond 300 kPa [L, 8.1].
    """

    viscosity_pa_s: float = hy.MEDIUM_VISCOSITY_PA_S
    medium: InletLine = field(default_factory=InletLine)
    drug: InletLine = field(default_factory=InletLine)
    aux: InletLine = field(default_factory=lambda: InletLine(tubing=Tubing(length_m=0.25)))
    outlet_tubing: Tubing = field(default_factory=lambda: Tubing(length_m=0.3))
    outlet_sensor_distance_m: float = 0.05
    chamber: Chamber = field(default_factory=Chamber)
    dilution: DilutionGenerator = field(default_factory=DilutionGenerator)
    manifold_width_m: float = 0.5e-3
    manifold_length_m: float = 10e-3
    pdms_youngs_modulus_pa: float = hy.PDMS_YOUNGS_MODULUS_PA
    burst_pressure_kpa: float = 300.0

    def inlet_line(self, inlet: str) -> InletLine:
        """Return the line of ``inlet`` (one of :data:`INLETS`)."""
        lines = {"medium": self.medium, "drug": self.drug, "aux": self.aux}
        return lines[inlet]

    def dead_volume_ul(self, inlet: str) -> float:
        """Plug-flow volume from syringe to chambers: tubing + fitting + on-chip, uL."""
        line = self.inlet_line(inlet)
        return (
            line.tubing.volume_ul() + line.fitting_dead_volume_ul + self.dilution.internal_volume_ul
        )

    def ladder(self) -> LadderDesign:
        """Resistances of the dilution ladder for this chip's design point."""
        d = self.dilution
        return design_serial_dilution(
            n_chambers=d.n_chambers,
            dilution_ratio=d.dilution_ratio,
            design_inlet_flow_ul_s=d.design_inlet_flow_ul_min / 60.0,
            manifold_pressure_kpa=d.manifold_pressure_kpa,
            chamber_resistance_kpa_s_ul=self.chamber.resistance_kpa_s_ul(self.viscosity_pa_s),
            outlet_resistance_kpa_s_ul=self.outlet_tubing.resistance_kpa_s_ul(self.viscosity_pa_s),
        )

    def network(self) -> NetworkSpec:
        """Build the lumped RC network of chip, tubing and syringes."""
        mu = self.viscosity_pa_s
        lad = self.ladder()
        n = self.dilution.n_chambers
        e_pdms = self.pdms_youngs_modulus_pa
        manifold_c = hy.m3_pa_to_ul_kpa(
            hy.pdms_channel_compliance_m3_pa(self.manifold_width_m, self.manifold_length_m, e_pdms)
        )
        mix_c = hy.m3_pa_to_ul_kpa(
            hy.pdms_channel_compliance_m3_pa(
                self.dilution.channel_width_m, self.dilution.channel_length_per_node_m, e_pdms
            )
        )
        nodes: list[str] = [f"syringe:{name}" for name in INLETS] + ["manifold"]
        compliance = [self.inlet_line(name).syringe_node_compliance_ul_kpa() for name in INLETS]
        compliance.append(manifold_c)
        nodes += [f"mix:{k}" for k in range(n)]
        compliance += [mix_c] * n
        nodes += [f"chamber:{k}" for k in range(n)]
        compliance += [self.chamber.compliance_ul_kpa(e_pdms)] * n
        nodes.append("outlet")
        compliance.append(manifold_c + self.outlet_tubing.compliance_ul_kpa())
        port_node = {"medium": "manifold", "drug": "mix:0", "aux": "manifold"}
        edges = [
            Edge(
                f"line:{name}",
                f"syringe:{name}",
                port_node[name],
                self.inlet_line(name).tubing.resistance_kpa_s_ul(mu),
            )
            for name in INLETS
        ]
        edges += [
            Edge(f"diluent:{k}", "manifold", f"mix:{k}", lad.diluent_kpa_s_ul[k - 1])
            for k in range(1, n)
        ]
        edges += [
            Edge(f"transfer:{k}", f"mix:{k}", f"mix:{k + 1}", lad.transfer_kpa_s_ul[k])
            for k in range(n - 1)
        ]
        edges += [
            Edge(f"restrictor:{k}", f"mix:{k}", f"chamber:{k}", lad.restrictor_kpa_s_ul[k])
            for k in range(n)
        ]
        r_chamber = self.chamber.resistance_kpa_s_ul(mu)
        edges += [Edge(f"drain:{k}", f"chamber:{k}", "outlet", r_chamber) for k in range(n)]
        edges.append(Edge("bypass", "mix:0", "outlet", lad.bypass_kpa_s_ul))
        edges.append(Edge("outlet", "outlet", GROUND, self.outlet_tubing.resistance_kpa_s_ul(mu)))
        chip_path_ul = self.chamber.volume_ul()  # from chamber entry (end of dead volume) to outlet
        inlets = tuple(
            InletPort(
                name=name,
                node=f"syringe:{name}",
                line_edge=f"line:{name}",
                dead_volume_ul=self.dead_volume_ul(name),
                chip_path_volume_ul=chip_path_ul,
            )
            for name in INLETS
        )
        shear = self.chamber.wall_shear_pa_per_ul_min(mu)
        chambers = tuple(
            ChamberPort(f"chamber:{k}", f"restrictor:{k}", self.chamber.volume_ul(), shear)
            for k in range(n)
        )
        sensor_ul = hy.tube_volume_ul(
            self.outlet_sensor_distance_m, self.outlet_tubing.inner_diameter_m
        )
        return NetworkSpec(
            nodes=tuple(nodes),
            compliance_ul_kpa=tuple(compliance),
            edges=tuple(edges),
            inlets=inlets,
            chambers=chambers,
            outlet_edge="outlet",
            outlet_sensor_volume_ul=sensor_ul,
            burst_pressure_kpa=self.burst_pressure_kpa,
            chip_nodes=tuple(name for name in nodes if not name.startswith("syringe:")),
        )


@dataclass(frozen=True)
class ReferenceFluidics:
    """What :func:`build_reference_fluidics` assembled.

    Attributes:
        chip: the chip description.
        network: the hydraulic component (pressures, flows, faults).
        drug: the drug transport component (chamber concentrations and history).
        outlet_sensor: the :class:`simulator.world.FlowSource` for the outlet flow sensor.
    """

    chip: ReferenceChip
    network: FluidicNetwork
    drug: DrugTransport
    outlet_sensor: EdgeFlowSensor


def build_reference_fluidics(
    world: World,
    chip: ReferenceChip | None = None,
    *,
    pumps: Mapping[str, SyringeMechanics] | None = None,
    max_transport_step_s: float = 60.0,
) -> ReferenceFluidics:
    """Create the chip's hydraulics and drug transport and register them with ``world``.

    Register the pump emulators with the world *before* calling this, so that in every
    world step the pumps move first, then the hydraulics answers with back pressures, then
    drug transport follows (a pump registered later is read one step late).

    Args:
        world: the world to register the components with (hydraulics, then drug).
        chip: the chip description (``ReferenceChip()`` if omitted).
        pumps: pumps to attach now, by inlet name.
        max_transport_step_s: longest interval between drug-transport updates.

    Returns:
        The assembled parts.
    """
    from simulator.drug import DrugTransport
    from simulator.fluidics import FluidicNetwork

    chip = ReferenceChip() if chip is None else chip
    network = FluidicNetwork(chip.network())
    for inlet, pump in (pumps or {}).items():
        network.attach_pump(inlet, pump)
    drug = DrugTransport(network, max_transport_step_s=max_transport_step_s)
    world.add(network)
    world.add(drug)
    return ReferenceFluidics(
        chip=chip, network=network, drug=drug, outlet_sensor=network.outlet_sensor
    )
