"""Tecan Cavro XCalibur / XLP 6000 syringe pumps with distribution valves.

:mod:`drivers.cavro.codec` holds the pure DT/OEM protocol code (framing, status byte,
command strings, unit conversions); :class:`drivers.cavro.pump.CavroPump` is the device.
"""

from drivers.cavro.pump import CavroPump

__all__ = ["CavroPump"]
