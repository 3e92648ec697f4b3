"""Discover the tour's sections and run them in order."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import time
from pathlib import Path

from numpyro_ext.demo import sections as sections_pkg
from numpyro_ext.demo.registry import SECTIONS, Context, Section

__all__ = ["load_sections", "main", "run_tour"]


def load_sections() -> list[Section]:
    """Import every module of :mod:`numpyro_ext.demo.sections`; return sections in order."""
    for info in pkgutil.iter_modules(sections_pkg.__path__):
        importlib.import_module(f"{sections_pkg.__name__}.{info.name}")
    return sorted(SECTIONS.values(), key=lambda s: (s.order, s.name))


def run_tour(
    out: Path, quick: bool = False, only: list[str] | None = None, seed: int = 0
) -> dict[str, float]:
    """Run the selected sections (all by default); return seconds spent per section."""
    sections = load_sections()
    if only:
        unknown = sorted(set(only) - {s.name for s in sections})
        if unknown:
            known = ", ".join(s.name for s in sections)
            raise ValueError(f"unknown demo section(s) {unknown}; known sections: {known}")
        sections = [s for s in sections if s.name in only]
    timings = {}
    for i, sec in enumerate(sections, 1):
        print(f"\n== [{i}/{len(sections)}] {sec.title} ({sec.name}) ==")
        start = time.perf_counter()
        sec.run(Context(out=out / sec.name, quick=quick, seed=seed))
        timings[sec.name] = time.perf_counter() - start
        print(f"-- {sec.name} done in {timings[sec.name]:.1f} s")
    print("\nTour timings:")
    for name, seconds in timings.items():
        print(f"  {name:<28s} {seconds:7.1f} s")
    print(f"  {'total':<28s} {sum(timings.values()):7.1f} s")
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m numpyro_ext.demo", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smallest runs that make the point")
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="figure folder")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these sections")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args(argv)
    if args.list:
        for sec in load_sections():
            print(f"{sec.name:<28s} {sec.title}")
        return
    run_tour(args.out, quick=args.quick, only=args.only, seed=args.seed)
