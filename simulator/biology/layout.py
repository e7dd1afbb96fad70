"""Where the chambers are: chamber size and stage coordinates of the reference chip.

The reference chip (``simulator.chip``) has eight 2 mm x 0.25 mm x 10 mm culture chambers
[A, domain reference 1.2]. Chamber-local coordinates are in um: ``x`` across the chamber
(0 ... width), ``y`` along it (0 ... length), ``z`` up from the glass floor (0 ... gel
height). On the stage the chambers lie side by side along x at ``pitch_um``, centred on
``y = 0``, chamber 0 leftmost, the chip centre at stage (0, 0) [A].
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChamberLayout"]


@dataclass(frozen=True)
class ChamberLayout:
    """Geometry of the chamber row.

    Attributes:
        n_chambers: number of chambers (8 on the reference chip).
        width_um: chamber width, um (2 mm [A, 1.2]).
        length_um: chamber length, um (10 mm [A, 1.2]).
        gel_height_um: gel thickness, um (0.25 mm [A, 1.2]).
        pitch_um: centre-to-centre distance of neighbouring chambers, um [A].
    """

    n_chambers: int = 8
    width_um: float = 2000.0
    length_um: float = 10000.0
    gel_height_um: float = 250.0
    pitch_um: float = 3000.0

    def centre_um(self, chamber: int) -> tuple[float, float]:
        """Stage coordinates (x, y) of a chamber's centre, um."""
        if not 0 <= chamber < self.n_chambers:
            raise ValueError(f"chamber {chamber} out of range 0..{self.n_chambers - 1}")
        return ((chamber - (self.n_chambers - 1) / 2.0) * self.pitch_um, 0.0)

    def origin_um(self, chamber: int) -> tuple[float, float]:
        """Stage coordinates of a chamber's local origin (its x = 0, y = 0 corner), um."""
        cx, cy = self.centre_um(chamber)
        return (cx - self.width_um / 2.0, cy - self.length_um / 2.0)

    def centres_um(self) -> list[tuple[float, float]]:
        """Stage coordinates of every chamber centre, in chamber order."""
        return [self.centre_um(k) for k in range(self.n_chambers)]
