"""The built documentation shows typeset math, not raw TeX, and needs no network to do so.

The site is built with ``mkdocs build --strict`` (or read from ``$NUMPYRO_EXT_SITE``, the folder
that ``make docs`` has just built); its math is typeset at build time by
``docs_hooks/katex_prerender.py``, so parsing the HTML sees exactly what a reader's browser shows.
"""

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\\frac|\\mathrm|\\operatorname|\\mathcal")
# Docstring reStructuredText that reached the page unconverted (docs_hooks/docstring_rst.py):
# math shown as code, role prefixes, a simple table's rules. A doctest shows as nested quotes.
RAW_RST = re.compile(r":(?:math|class|func|meth|mod|attr|data|obj|exc):|\.\. math::|={5,} +={5,}")
DOCTEST_AS_QUOTES = "<blockquote>\n<blockquote>"
# Pages whose math carries the most weight; each must typeset at least this many expressions.
# The API pages' math comes from docstrings (docs_hooks/docstring_rst.py).
MATH_PAGES = {
    "polya-gamma": 30,
    "sparse-gp": 30,
    "augmentation": 30,
    "api/gp": 100,
    "api/guides": 40,
    "api/infer": 40,
    "api/handlers": 10,
}


class VisibleText(HTMLParser):
    """Text a reader sees: no code, scripts, styles, or KaTeX's hidden TeX annotation."""

    HIDDEN = frozenset({"code", "pre", "script", "style", "annotation"})

    def __init__(self):
        super().__init__()
        self.depth, self.parts, self.katex, self.links = 0, [], 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.HIDDEN:
            self.depth += 1
        if "katex" in (attrs.get("class") or "").split():
            self.katex += 1
        if tag == "link" and attrs.get("rel") == "stylesheet":
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth == 0:
            self.parts.append(data)


def read(page: Path) -> VisibleText:
    parser = VisibleText()
    parser.feed(page.read_text())
    return parser


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    prebuilt = os.environ.get("NUMPYRO_EXT_SITE")
    if prebuilt and (Path(prebuilt) / "index.html").is_file():
        return Path(prebuilt)
    pytest.importorskip("mkdocs", reason="building the site needs the [docs] extra")
    if shutil.which("node") is None:
        pytest.skip("the docs build typesets math with Node.js, which is not on PATH")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)]
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=600)
    return out


@pytest.mark.parametrize("name", sorted(MATH_PAGES))
def test_capability_pages_show_typeset_math(site, name):
    page = read(site / name / "index.html")
    text = "".join(page.parts)
    assert page.katex >= MATH_PAGES[name], f"{name}: {page.katex} typeset expressions"
    assert not RAW_TEX.search(text), f"{name}: raw TeX shown: {RAW_TEX.search(text)[0]!r}"
    assert "arithmatex" not in (site / name / "index.html").read_text()
    assert any(href.endswith("assets/katex/katex.min.css") for href in page.links)


def test_every_page_is_free_of_raw_tex(site):
    for path in site.rglob("index.html"):
        text = "".join(read(path).parts)
        assert not RAW_TEX.search(text), f"{path.relative_to(site)}: raw TeX shown"
        leftover = RAW_RST.search(text)
        assert not leftover, f"{path.relative_to(site)}: reStructuredText shown: {leftover[0]!r}"
        assert DOCTEST_AS_QUOTES not in path.read_text(), f"{path.relative_to(site)}: doctest"


def test_math_needs_no_network(site):
    css = (site / "assets" / "katex" / "katex.min.css").read_text()
    fonts = set(re.findall(r"url\((fonts/[^)]+\.woff2)\)", css))
    assert fonts, "katex.min.css names no woff2 fonts"
    assert all((site / "assets" / "katex" / font).is_file() for font in fonts)
    for path in site.rglob("*.html"):
        assert "cdn.jsdelivr" not in path.read_text() and "mathjax" not in path.read_text()


def test_the_check_sees_raw_tex():
    """Negative control: an untypeset page fails the checks above."""
    parser = VisibleText()
    parser.feed('<p><span class="arithmatex">\\( \\mathrm{PG}(b, c) \\)</span></p>')
    assert parser.katex == 0
    assert RAW_TEX.search("".join(parser.parts))


@pytest.mark.parametrize(
    "html",
    [
        "<p>logits :math:<code>\\psi</code> of a site</p>",
        '<p>.. math::</p><div class="highlight"><pre><code>\\frac{1}{2}</code></pre></div>',
        "<p>:class:<code>PolyaGammaLikelihood</code></p>",
        "<p>====== ===== likelihood b ====== =====</p>",
    ],
)
def test_the_check_sees_docstring_rst_left_unconverted(html):
    """Negative control: mkdocstrings' rendering of untouched docstring forms fails the checks."""
    parser = VisibleText()
    parser.feed(html)
    assert parser.katex == 0
    assert RAW_RST.search("".join(parser.parts))


def _docstring_rst():
    pytest.importorskip("griffe", reason="the extension needs the [docs] extra")
    return _load("docstring_rst")


def test_docstring_math_becomes_arithmatex_math():
    convert = _docstring_rst().convert
    text = (
        "Logits :math:`\\psi` and :math:`a\n+ b`:\n"
        ".. math::\n\n    x = 1\n      + 2\n\n    y = 3\n\nAfter.\n"
        ":param c: the :math:`c`.\n    .. math::\n\n        z\n"
    )
    assert convert(text) == (
        "Logits \\(\\psi\\) and \\(a\n+ b\\):\n\n"
        "\\[\nx = 1\n  + 2\n\\]\n\n\\[\ny = 3\n\\]\n\nAfter.\n"
        ":param c: the \\(c\\).\n\n    \\[\n    z\n    \\]\n"
    )
    with pytest.raises(ValueError, match="no formula"):
        convert("Text.\n.. math::\n\nAfter.")


def test_docstring_roles_tables_and_doctests_become_markdown():
    convert = _docstring_rst().convert
    text = (
        "See :class:`~numpyro_ext.transforms.Chain` and :func:`numpyro_ext.linalg.cholesky`.\n\n"
        "=======  ===  =========\n"
        "name     b    :math:`c`\n"
        "=======  ===  =========\n"
        "``one``  1    ``y -\n"
        "              1/2``\n"
        "two      2    3\n"
        "=======  ===  =========\n\n"
        ":param x: the input.\n\n"
        ">>> 1 + 1\n2\n"
    )
    assert convert(text) == (
        "See `Chain` and `numpyro_ext.linalg.cholesky`.\n\n"
        "| name | b | \\(c\\) |\n| --- | --- | --- |\n"
        "| ``one`` | 1 | ``y - 1/2`` |\n| two | 2 | 3 |\n\n"
        "```pycon\n>>> 1 + 1\n2\n```\n\n"
        ":param x: the input.\n"
    )
    with pytest.raises(ValueError, match="without header"):
        convert("===  ===\na    b\n")


def _load(name: str):
    import importlib.util

    path = ROOT / "docs_hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hook():
    pytest.importorskip("mkdocs", reason="the hook needs the [docs] extra")
    return _load("katex_prerender")


def test_bad_tex_fails_the_build_naming_page_and_expression():
    hook = _hook()
    if shutil.which("node") is None:
        pytest.skip("the hook typesets math with Node.js, which is not on PATH")
    page = type("Page", (), {"file": type("File", (), {"src_path": "bad.md"})()})()
    good = hook.on_page_content('<span class="arithmatex">\\(x^2\\)</span>', page, None, None)
    assert 'class="katex"' in good and "arithmatex" not in good
    with pytest.raises(Exception, match=r"bad\.md:\n  '\\\\frac\{1\}'"):
        hook.on_page_content('<span class="arithmatex">\\(\\frac{1}\\)</span>', page, None, None)


def test_display_math_is_set_apart_from_its_paragraph():
    hook = _hook()
    text = "Define\n\\[\nx = 1\n\\]\nso that\n```\n\\[ code \\]\n```\n"
    assert hook._set_displays_apart(text) == (
        "Define\n\n\\[\nx = 1\n\\]\n\nso that\n```\n\\[ code \\]\n```\n"
    )
