"""Reproducible benchmarks; each module writes a Markdown + JSON report under bench/results/."""
