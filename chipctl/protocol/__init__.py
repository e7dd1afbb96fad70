"""Perfusion protocols: the step model, the TOML loader, the built-in catalogue, the runner."""
