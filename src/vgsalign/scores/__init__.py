"""Alignment and glancing scores: run, tensor math, masks, aggregates, tensor I/O."""
