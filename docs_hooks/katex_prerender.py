"""MkDocs hook: typeset the site's math at build time with the vendored KaTeX.

``pymdownx.arithmatex`` (generic mode) wraps each ``\\( ... \\)`` and ``\\[ ... \\]`` in a
``<span>``/``<div class="arithmatex">``. This hook hands every such expression of a page to
``docs/assets/katex/katex.min.js`` run by Node.js, in one process per page, and replaces the
wrapper with KaTeX's HTML and MathML. The built pages need no script and no network to show
math: only ``katex.min.css`` and its fonts, which ship with the site. A TeX error fails the build
and names the page and the expression.

Display math is written with ``\\[`` and ``\\]`` on their own lines; arithmatex reads it only as a
block of its own, so the hook first sets such a display apart from the text around it with blank
lines (outside code fences).
"""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

from mkdocs.exceptions import PluginError

KATEX = Path(__file__).parents[1] / "docs" / "assets" / "katex" / "katex.min.js"
MATH = re.compile(
    r'<span class="arithmatex">\\\((?P<inline>.*?)\\\)</span>'
    r'|<div class="arithmatex">\\\[(?P<display>.*?)\\\]</div>',
    re.S,
)
# Reads [[tex, display], ...] as JSON on stdin; writes [html | {"error": message}, ...].
RENDER = """
const katex = require(process.argv[1]);
let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map(([tex, displayMode]) => {
    try {
      const options = { displayMode, throwOnError: true, output: "htmlAndMathml" };
      return katex.renderToString(tex, options);
    } catch (error) {
      return { error: String(error.message) };
    }
  });
  process.stdout.write(JSON.stringify(out));
});
"""


def _set_displays_apart(markdown: str) -> str:
    out, in_fence, in_display = [], False, False
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        opens = not in_fence and not in_display and stripped.startswith("\\[")
        if opens and out and out[-1].strip():
            out.append("")
        in_display = in_display or opens
        out.append(line)
        if in_display and stripped.endswith("\\]"):
            out.append("")
            in_display = False
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    return _set_displays_apart(markdown)


def render(expressions: list[tuple[str, bool]]) -> list[str | dict]:
    """KaTeX HTML for each ``(tex, display)``, or ``{"error": message}`` where KaTeX refuses."""
    node = shutil.which("node")
    if node is None:
        raise PluginError(
            "katex_prerender: the docs build typesets math with Node.js, and `node` is not on "
            "PATH (install Node.js 18 or newer)"
        )
    result = subprocess.run(
        [node, "-e", RENDER, str(KATEX)],
        input=json.dumps(expressions),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PluginError(f"katex_prerender: node failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def on_page_content(html_text: str, page, config, files) -> str:
    matches = list(MATH.finditer(html_text))
    if not matches:
        return html_text
    expressions = [
        (
            html.unescape(m.group("display") if m.group("display") is not None else m["inline"]),
            m.group("display") is not None,
        )
        for m in matches
    ]
    rendered = render(expressions)
    errors = [
        f"  {tex!r}: {out['error']}"
        for (tex, _), out in zip(expressions, rendered, strict=True)
        if isinstance(out, dict)
    ]
    if errors:
        raise PluginError(f"katex_prerender: {page.file.src_path}:\n" + "\n".join(errors))
    pieces, last = [], 0
    for match, out in zip(matches, rendered, strict=True):
        pieces.append(html_text[last : match.start()])
        pieces.append(
            out if match.group("display") is None else f'<div class="math-display">{out}</div>'
        )
        last = match.end()
    pieces.append(html_text[last:])
    return "".join(pieces)
