"""The demo tour: ``python -m numpyro_ext.demo [--quick] [--out DIR] [--only NAME ...]``.

One section per capability; each prints what it fitted and saves its figures as PNG files.
"""

from numpyro_ext.demo.registry import SECTIONS, Context, Section, section
from numpyro_ext.demo.runner import load_sections, main, run_tour

__all__ = ["SECTIONS", "Context", "Section", "load_sections", "main", "run_tour", "section"]
