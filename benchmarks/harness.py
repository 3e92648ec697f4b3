"""Timing helpers shared by the benchmark scripts.

Every benchmark times numpyro_ext and its anchor in the same process: the first call (which
compiles) is reported separately, then the median of ``repeats`` timed calls, each blocked until
its result is ready. Absolute times drift on shared machines; the ratio column does not.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax

__all__ = ["Table", "Timing", "environment", "time_call"]


@dataclass(frozen=True)
class Timing:
    """First-call time (compilation included) and the median of the timed repeats, seconds."""

    first: float
    median: float
    times: tuple[float, ...]


def _block(out):
    return jax.block_until_ready(out) if out is not None else out


def time_call(fn: Callable[[], object], repeats: int = 7, warmup: int = 1) -> Timing:
    """Time ``fn()``; the first ``warmup`` calls are excluded from the median."""
    start = time.perf_counter()
    _block(fn())
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        _block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return Timing(first=first, median=statistics.median(times), times=tuple(times))


def environment() -> str:
    """One line naming the machine and library versions the numbers were taken with."""
    dev = jax.devices()[0]
    return (
        f"jax {jax.__version__} on {dev.platform} ({dev.device_kind}), "
        f"Python {platform.python_version()}, {platform.machine()}"
    )


@dataclass
class Table:
    """A markdown table; ``ratio`` rows compare ours with the anchor (ours / anchor)."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)} columns")
        self.rows.append([_fmt(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def print(self) -> None:
        print(self.markdown(), flush=True)


def _fmt(cell) -> str:
    if isinstance(cell, float):
        return f"{cell:.4g}"
    return str(cell)
