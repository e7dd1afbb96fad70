"""Simulated world and byte-level device emulators (imports nothing of chipctl or drivers)."""
