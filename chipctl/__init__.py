"""chipctl."""
