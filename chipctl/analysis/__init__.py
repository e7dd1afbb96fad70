"""Tumoroid readout: from frames to growth, viability and drug response.

The modules, in the order data flows through them:

* :mod:`chipctl.analysis.segment`: tumoroids in brightfield frames; live/dead stain
  signal inside them.
* :mod:`chipctl.analysis.track`: the same tumoroid across time points of a position.
* :mod:`chipctl.analysis.metrics`: per-tumoroid and per-chamber numbers.
* :mod:`chipctl.analysis.tables`: the ``/analysis/tumoroids`` and ``/analysis/chambers``
  tables of the run file (their schema is documented there).
* :mod:`chipctl.analysis.live`: the per-position pipeline, and :class:`LiveAnalysis`,
  which runs it on a worker thread while a run acquires.
* :mod:`chipctl.analysis.images`: the same pipeline over the stored frames of a run file.

Growth-rate inhibition, dose response and the report build on these tables in their own
modules. Nothing is re-exported here: import the module you need.
"""
