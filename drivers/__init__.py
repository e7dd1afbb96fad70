"""chipctl's driver library: transports, vendor protocols, role interfaces, clocks, errors.

This package imports nothing from ``chipctl`` or ``simulator``; it can be used on its own
to drive the instruments from any Python program.
"""
