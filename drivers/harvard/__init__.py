"""Harvard Apparatus PHD ULTRA / Pump 11 Elite and KDS Legato syringe pumps ("pump chain").

:mod:`drivers.harvard.codec` holds the pure byte format; :class:`HarvardPump` the device.
"""

from drivers.harvard.pump import HarvardPump

__all__ = ["HarvardPump"]
