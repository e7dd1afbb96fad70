"""The operator GUI (PyQt5 + pyqtgraph): the only package of chipctl that imports Qt.

Thread topology (the engine's own threads are described in :mod:`chipctl.engine.run` and
:mod:`chipctl.engine.manual`):

- the **Qt main thread** runs every widget. It never does device I/O, never reads HDF5
  except a run file's small tables when one is opened, never segments an image, and never
  joins a thread during a run;
- the **lifecycle worker** (:mod:`chipctl.gui.controller`) builds rigs, preflights
  protocols, opens and closes manual control, creates run files, starts runs and waits
  for them to end;
- the **engine thread** (of a run, or of manual control) owns the devices; it calls the
  :class:`~chipctl.gui.bridge.EngineBridge` listener, which only queues and wakes the Qt
  thread (a queued signal), so the engine never waits for the GUI;
- the **plot reader** and **segmentation** workers (:mod:`chipctl.gui.worker`) read
  telemetry history back from the run file and outline tumoroids.

Modules: :mod:`~chipctl.gui.app` (start), :mod:`~chipctl.gui.cli` (``chipctl gui``),
:mod:`~chipctl.gui.main_window`, :mod:`~chipctl.gui.controller`,
:mod:`~chipctl.gui.bridge`, :mod:`~chipctl.gui.protocol_panel`,
:mod:`~chipctl.gui.instruments`, :mod:`~chipctl.gui.plots` (with the Qt-free
:mod:`~chipctl.gui.series`, :mod:`~chipctl.gui.curves` and :mod:`~chipctl.gui.history`),
:mod:`~chipctl.gui.images`, :mod:`~chipctl.gui.events`.
"""
