"""Gaussian-process building blocks: kernels, inducing features, conditionals."""

__all__: list[str] = []
