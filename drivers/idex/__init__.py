"""IDEX / Rheodyne MX Series II and Titan EZ selector valves (hardware-reference §5.1)."""

from drivers.idex.codec import CommandMode, ValveStatus
from drivers.idex.valve import IdexValve

__all__ = ["CommandMode", "IdexValve", "ValveStatus"]
