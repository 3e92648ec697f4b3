"""Guides that work wherever a NumPyro ``AutoGuide`` does (SVI, Predictive, ...)."""

__all__: list[str] = []
