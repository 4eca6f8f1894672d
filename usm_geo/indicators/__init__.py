"""Indicators: registry, rates, survey shares, smoothing, concentration, harm, progress."""
