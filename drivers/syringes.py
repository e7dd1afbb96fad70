"""A library of common syringes, chosen by name in the instrument config.

Inner diameters are the values printed in the syringe tables that pump vendors ship with
their pumps (Harvard Apparatus and New Era syringe tables; BD, Hamilton, SGE and Terumo
catalogues). They vary by a few hundredths of a millimetre between sources and production
lots: a measured diameter can always be given in the config instead
(``syringe = { inner_diameter = "14.43 mm", volume = "10 mL" }``). Every 1 % of diameter
error is a 2 % flow error, so calibrate gravimetrically for quantitative work.
"""

from __future__ import annotations

from drivers.roles import Syringe

__all__ = ["SYRINGES", "lookup_syringe"]


def _s(name: str, inner_diameter_mm: float, volume_ml: float) -> Syringe:
    return Syringe(name=name, inner_diameter_mm=inner_diameter_mm, volume_ul=volume_ml * 1000.0)


#: Name -> syringe. Names are matched case-insensitively by :func:`lookup_syringe`.
SYRINGES: dict[str, Syringe] = {
    s.name: s
    for s in (
        # BD Plastipak (polypropylene, disposable)
        _s("BD Plastipak 1 mL", 4.78, 1),
        _s("BD Plastipak 3 mL", 8.66, 3),
        _s("BD Plastipak 5 mL", 12.06, 5),
        _s("BD Plastipak 10 mL", 14.50, 10),
        _s("BD Plastipak 20 mL", 19.13, 20),
        _s("BD Plastipak 30 mL", 21.70, 30),
        _s("BD Plastipak 50 mL", 26.70, 50),
        _s("BD Plastipak 60 mL", 26.70, 60),
        # Hamilton Gastight (glass, PTFE-tipped plunger), 1700 and 1000 series
        _s("Hamilton Gastight 10 uL", 0.485, 0.010),
        _s("Hamilton Gastight 25 uL", 0.729, 0.025),
        _s("Hamilton Gastight 50 uL", 1.03, 0.050),
        _s("Hamilton Gastight 100 uL", 1.457, 0.100),
        _s("Hamilton Gastight 250 uL", 2.303, 0.250),
        _s("Hamilton Gastight 500 uL", 3.256, 0.500),
        _s("Hamilton Gastight 1 mL", 4.608, 1),
        _s("Hamilton Gastight 2.5 mL", 7.286, 2.5),
        _s("Hamilton Gastight 5 mL", 10.30, 5),
        _s("Hamilton Gastight 10 mL", 14.57, 10),
        # SGE gas-tight (glass)
        _s("SGE 100 uL", 1.46, 0.100),
        _s("SGE 250 uL", 2.30, 0.250),
        _s("SGE 500 uL", 3.26, 0.500),
        _s("SGE 1 mL", 4.61, 1),
        _s("SGE 2.5 mL", 7.28, 2.5),
        _s("SGE 5 mL", 10.30, 5),
        _s("SGE 10 mL", 14.60, 10),
        # Terumo (polypropylene, disposable)
        _s("Terumo 1 mL", 4.70, 1),
        _s("Terumo 3 mL", 8.95, 3),
        _s("Terumo 5 mL", 13.00, 5),
        _s("Terumo 10 mL", 15.80, 10),
        _s("Terumo 20 mL", 20.15, 20),
        _s("Terumo 30 mL", 23.10, 30),
        _s("Terumo 60 mL", 29.10, 60),
    )
}

_BY_KEY = {" ".join(name.lower().split()): s for name, s in SYRINGES.items()}


def lookup_syringe(name: str) -> Syringe:
    """Return the syringe called ``name`` (case and spacing ignored).

    Raises:
        KeyError: no such syringe; the message lists close names.
    """
    key = " ".join(name.lower().split())
    try:
        return _BY_KEY[key]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(key, list(_BY_KEY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(_BY_KEY[c].name) for c in close)}?" if close else ""
        raise KeyError(f"unknown syringe {name!r}{hint}") from None
