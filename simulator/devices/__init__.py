"""Byte-level emulators, one module per vendor protocol, each written from the manual."""
