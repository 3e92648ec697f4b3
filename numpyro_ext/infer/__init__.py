"""Inference algorithms NumPyro lacks: MCMC kernels and objectives."""

__all__: list[str] = []
