"""Measuring codecs, for ``rdc eval``, ``rdc bdrate``, ``rdc plot`` and ``benchmarks/``: scoring images
(:mod:`.scoring`), result files and their curves (:mod:`.results`), BD-rates (:mod:`.bdrate`), charts
(:mod:`.plotting`) and the speed table (:mod:`.speed`). Nothing here is imported by the codec or the pipelines."""
