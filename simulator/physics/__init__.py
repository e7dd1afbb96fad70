"""Pure physics of the chip: resistances, compliances, RC networks, mixing, dilution design.

Nothing here holds simulation state or reads a clock; :mod:`simulator.fluidics` and
:mod:`simulator.drug` build the time-stepped world components on top of these functions.
"""
