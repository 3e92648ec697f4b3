"""The tour runner: discovery, ordering, selection, figures and clear errors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from numpyro_ext.demo import registry
from numpyro_ext.demo.runner import load_sections, main, run_tour


@pytest.fixture
def scratch_registry(monkeypatch):
    """Run with only the sections a test registers, in a fresh registry."""
    monkeypatch.setattr(registry, "SECTIONS", {})
    monkeypatch.setattr("numpyro_ext.demo.runner.SECTIONS", registry.SECTIONS)
    monkeypatch.setattr("numpyro_ext.demo.runner.load_sections", _sorted_sections)
    return registry.SECTIONS


def _sorted_sections():
    return sorted(registry.SECTIONS.values(), key=lambda s: (s.order, s.name))


def test_every_shipped_section_is_discovered():
    names = [s.name for s in load_sections()]
    assert "logistic_regression" in names
    assert names == [s.name for s in sorted(load_sections(), key=lambda s: (s.order, s.name))]


def test_sections_run_in_order_and_save_figures(scratch_registry, tmp_path):
    ran = []

    @registry.section("second", "Second", order=2)
    def second(ctx):
        ran.append(("second", ctx.quick, ctx.pick(100, 10)))
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        ctx.savefig(fig, "line")

    @registry.section("first", "First", order=1)
    def first(ctx):
        ran.append(("first", ctx.quick, ctx.pick(100, 10)))

    timings = run_tour(tmp_path, quick=True)
    assert ran == [("first", True, 10), ("second", True, 10)]
    assert list(timings) == ["first", "second"]
    assert (tmp_path / "second" / "line.png").stat().st_size > 0


def test_only_selects_sections_and_rejects_unknown_names(scratch_registry, tmp_path):
    ran = []
    registry.section("a", "A")(lambda ctx: ran.append("a"))
    registry.section("b", "B")(lambda ctx: ran.append("b"))
    run_tour(tmp_path, only=["b"])
    assert ran == ["b"]
    with pytest.raises(
        ValueError, match=r"unknown demo section\(s\) \['c'\]; known sections: a, b"
    ):
        run_tour(tmp_path, only=["c"])


def test_a_name_cannot_be_registered_twice(scratch_registry):
    registry.section("twice", "Twice")(lambda ctx: None)
    with pytest.raises(ValueError, match="registered twice"):
        registry.section("twice", "Twice again")(lambda ctx: None)


def test_list_prints_the_sections(capsys):
    main(["--list"])
    assert "logistic_regression" in capsys.readouterr().out
