"""Sensirion liquid flow sensors (SLF3x) on the SCC1-USB cable, over SHDLC.

Sensirion's official packages (``sensirion-shdlc-driver``, ``sensirion-uart-scc1``) speak
the SHDLC protocol; :mod:`drivers.sensirion.shdlc_port` lets them run over any chipctl
transport, and :class:`~drivers.sensirion.flow.SensirionFlowSensor` puts the flow-sensor
role on top.
"""

from drivers.sensirion.flow import SensirionFlowSensor
from drivers.sensirion.shdlc_port import TransportShdlcPort

__all__ = ["SensirionFlowSensor", "TransportShdlcPort"]
