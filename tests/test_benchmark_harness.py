"""The benchmark harness: compile excluded from the median, tables well formed."""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from harness import Table, time_call


def test_first_call_is_reported_apart_from_the_median():
    calls = []

    def fn():
        time.sleep(0.05 if not calls else 0.001)
        calls.append(1)

    timing = time_call(fn, repeats=5)
    assert len(calls) == 6
    assert timing.first >= 0.05
    assert timing.median < 0.02
    assert len(timing.times) == 5


def test_table_renders_markdown_and_checks_row_width():
    table = Table("t", ["a", "b"])
    table.add("x", 1.23456)
    assert table.markdown().splitlines()[2:] == ["| a | b |", "|---|---|", "| x | 1.235 |"]
    with pytest.raises(ValueError, match="row has 1 cells, table has 2 columns"):
        table.add("only one")
