"""The registry of demo-tour sections.

A section is a function ``run(ctx)`` decorated with :func:`section`. It fits something, prints
what it fitted (an ArviZ summary, timings) and saves its figures with ``ctx.savefig``. Sections
live one per module in :mod:`numpyro_ext.demo.sections`; the runner imports every module there,
so adding a section means adding a file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SECTIONS", "Context", "Section", "section"]


@dataclass
class Context:
    """What a section receives: where to write, how hard to work, and a seed.

    :param out: folder for the section's figures (created on demand).
    :param quick: when true, the section does the smallest run that still shows its point.
    :param seed: base PRNG seed.
    """

    out: Path
    quick: bool = False
    seed: int = 0
    figures: list[Path] = field(default_factory=list)

    def pick(self, full, quick):
        """Return ``quick`` in quick mode and ``full`` otherwise (sizes, iteration counts)."""
        return quick if self.quick else full

    def savefig(self, fig, name: str) -> Path:
        """Save a figure as ``<out>/<name>.png``, close it and report the path.

        :param fig: a matplotlib ``Figure`` or an arviz-plots ``PlotCollection``.
        """
        import matplotlib.pyplot as plt

        if hasattr(fig, "viz"):  # an arviz-plots PlotCollection on the matplotlib backend
            fig = fig.viz["figure"].item()
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.figures.append(path)
        print(f"  figure: {path}")
        return path

    @contextmanager
    def timed(self, what: str) -> Iterator[None]:
        """Print how long the enclosed block took."""
        start = time.perf_counter()
        yield
        print(f"  {what}: {time.perf_counter() - start:.2f} s")


@dataclass(frozen=True)
class Section:
    """A registered demo section."""

    name: str
    title: str
    order: int
    run: Callable[[Context], None]


SECTIONS: dict[str, Section] = {}


def section(name: str, title: str, order: int = 100):
    """Register ``run(ctx)`` as the demo section ``name``; sections run in ``order``."""

    def register(run: Callable[[Context], None]) -> Callable[[Context], None]:
        if name in SECTIONS:
            raise ValueError(f"demo section {name!r} is registered twice")
        SECTIONS[name] = Section(name=name, title=title, order=order, run=run)
        return run

    return register
