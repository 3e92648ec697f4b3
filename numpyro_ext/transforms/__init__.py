"""Bijector-style transforms and normalising flows built on NumPyro's ``Transform``."""

__all__: list[str] = []
