"""Datasets: the benchmark registry, importers, the embedded synthetic default and the ``prepare`` stage."""
