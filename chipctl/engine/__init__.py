"""The run engine: a discrete-event scheduler on the Clock, and the run that drives it."""
