"""Benchmark of the scan pipeline against the original Lambda design (issue 7); not part of the package."""
