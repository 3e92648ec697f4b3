"""Conformance suite: every guide of the library through NumPyro's contracts."""
