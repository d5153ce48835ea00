"""Benchmarks of wiser-async against the sandbox running in another process.

``python -m benchmarks`` (or ``make bench``) runs them all, writes
``benchmarks/results/latest.json`` and a timestamped copy, and prints a table
of targets: each measured value beside its bound or a baseline measured in
the same run, and their ratio. ``README.md`` beside this file says what each
benchmark measures, how to read the figures and how to add one.

The package imports nothing at import time: ``benchmarks._rss_child`` runs as
a child process and measures its own memory.
"""
