"""New Era Pump Systems syringe pumps (NE-300, NE-500, NE-1000, NE-4000).

:mod:`drivers.newera.codec` holds the wire format (pure functions);
:class:`NewEraPump` drives one pump at one address on a possibly shared link.
"""

from drivers.newera.pump import NewEraPump

__all__ = ["NewEraPump"]
