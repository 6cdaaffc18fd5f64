"""Scoring and running trained generators: the SR literature's metrics (`metrics`), benchmark
sets scored as the papers do (`validation`), inference on whole images (`inference`, tiled by
`tiling`) and evaluate's HTML report (`report`).

Imports nets, data, weights and common; never training. Training uses `metrics`, `validation`
and `inference` (its eval sets and sample grids), nothing else of this folder.
"""
