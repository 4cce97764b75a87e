"""Benchmarks: each module loads one benchmark's questions; ``BENCHMARKS`` picks a loader by name."""

from __future__ import annotations

from rscaffold.benchmarks import testbed

BENCHMARKS = {"testbed": testbed.load}
