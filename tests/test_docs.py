"""Every ```python block of README.md and docs/*.md runs as printed.

Blocks run page by page, top to bottom, in one namespace per page, so a later block may use what
an earlier one on the same page defined and nothing else. A block that is not meant to run
carries ``<!-- no-run: reason -->`` on the line directly above its fence; a marker without a
reason is an error. Tracebacks point at the page and its line numbers.
"""

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```(\w*)\s*$")
NO_RUN = re.compile(r"^<!--\s*no-run:\s*(.*?)\s*-->\s*$")
# CPU seconds for a page's blocks, compilation included: small step counts keep every page
# within it. CPU time, not wall time, so preemption does not count; a heavily loaded machine
# still inflates it (about 1.3x at load average 20 on 2 cores, from cache and lock contention).
PAGE_BUDGET_S = 60.0
# Pages that compile one program per capability they show: the sparse-GP page fits four guides,
# a classifier and a spherical-feature network (102 CPU seconds on a quiet 2-core run, 141 at
# load 20); the amortised page trains an amortised guide, a guide list and a posterior estimator
# (24 + 18 + 32 CPU seconds at load 20).
PAGE_BUDGETS_S = {"sparse-gp.md": 180.0, "amortized.md": 100.0}
# Peer packages from optional extras ([nn], [bench]): a page that imports one is skipped, with
# the reason, where it is not installed.
OPTIONAL = frozenset({"flax", "equinox", "gpjax", "polyagamma", "flowjax", "distrax"})


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    skip_reason: str | None


def python_blocks(text: str) -> list[Block]:
    """The fenced ```python blocks of a Markdown text, in order, with their no-run markers."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```")
        if opening.group(1) in ("python", "py"):
            marker = NO_RUN.match(lines[i - 1]) if i > 0 else None
            if marker is not None and not marker.group(1):
                raise ValueError(f"line {i}: a no-run marker must give its reason")
            reason = marker.group(1) if marker else None
            blocks.append(Block(i + 1, "\n".join(lines[i + 1 : end]) + "\n", reason))
        i = end + 1
    return blocks


def run_page(path: Path, root: Path = ROOT) -> list[Block]:
    """Execute a page's runnable blocks in one namespace; return the blocks that ran."""
    name = str(path.relative_to(root))
    namespace = {"__name__": f"docs_page_{path.stem.replace('-', '_')}"}
    ran = []
    for block in python_blocks(path.read_text()):
        if block.skip_reason is not None:
            continue
        # Blank lines before the code keep the page's line numbers in tracebacks.
        source = "\n" * block.line + block.code
        try:
            exec(compile(source, name, "exec"), namespace)
        except ModuleNotFoundError as error:
            if (error.name or "").split(".")[0] not in OPTIONAL:
                raise
            pytest.skip(f"{name}: the block at line {block.line} needs {error.name}")
        except Exception as error:
            raise AssertionError(
                f"{name}: the block at line {block.line} failed: {error!r}"
            ) from error
        ran.append(block)
    return ran


@pytest.fixture(autouse=True)
def _quiet_figures(monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)
    yield
    plt.close("all")


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_blocks_run(path, capsys):
    start = time.process_time()
    run_page(path)
    elapsed = time.process_time() - start
    budget = PAGE_BUDGETS_S.get(path.name, PAGE_BUDGET_S)
    assert elapsed < budget, f"{path.name}: blocks took {elapsed:.0f} CPU seconds"
    if path.name == "README.md":  # the front-page example ends with a LOO summary
        assert "elpd" in capsys.readouterr().out.lower()


def test_parser_reads_markers_and_fences():
    text = "\n".join(
        [
            "```python",
            "a = 1",
            "```",
            "<!-- no-run: needs a GPU -->",
            "```python",
            "b = 2",
            "```",
            "```bash",
            "make test",
            "```",
        ]
    )
    blocks = python_blocks(text)
    assert [(b.line, b.code, b.skip_reason) for b in blocks] == [
        (1, "a = 1\n", None),
        (5, "b = 2\n", "needs a GPU"),
    ]
    with pytest.raises(ValueError, match="reason"):
        python_blocks("<!-- no-run: -->\n```python\nx\n```")


def test_a_failing_block_names_its_page_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n```python\nraise RuntimeError(x)\n```\n")
    with pytest.raises(AssertionError, match=r"page\.md: the block at line 7"):
        run_page(page, root=tmp_path)
