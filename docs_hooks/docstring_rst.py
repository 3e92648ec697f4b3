"""Griffe extension: the reStructuredText forms of our docstrings become Markdown for the site.

Docstrings are written for Sphinx, IDEs and ``help()``: inline math ``:math:`\\psi```, display
math as a ``.. math::`` directive over an indented formula, cross-reference roles such as
``:class:`Chain```, simple tables framed by ``====`` rules, and doctest examples after the
``:param:`` fields. mkdocstrings renders docstring text as Markdown, where the math shows as code,
the roles keep their ``:class:`` prefix, a table runs together into one paragraph and a doctest
nests as quotes inside the last parameter's description. Once the package is loaded, and before
mkdocstrings renders it, this extension rewrites every docstring:

- ``:math:`x``` becomes ``\\(x\\)`` and each formula of a ``.. math::`` directive a ``\\[ ... \\]``
  block of its own; ``pymdownx.arithmatex`` wraps them and ``docs_hooks/katex_prerender.py``
  typesets them like the math of every other page;
- ``:class:`~a.B``` (and ``func``, ``meth``, ``mod``, ``attr``, ``data``, ``obj``, ``exc``)
  becomes the code span ```B``` (```a.B``` without the ``~``);
- a simple table becomes a Markdown table (a row whose other columns are blank continues the
  row above);
- a doctest block becomes a ``pycon`` code block, moved above the fields if it followed them.
"""

import re
import textwrap

import griffe

INLINE_MATH = re.compile(r":math:`([^`]+)`")
ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):`(~?)([^`]+)`")
DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<rest>.*)$")
RULE = re.compile(r"^=+( +=+)+ *$")
FIELD = re.compile(r"^:(param|type|return|returns|rtype|raises?|var|ivar|cvar)\b")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _math_blocks(lines: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(lines):
        directive = DIRECTIVE.match(lines[i])
        if directive is None:
            out.append(lines[i])
            i += 1
            continue
        indent, body = directive["indent"], [directive["rest"]] if directive["rest"] else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
            body.append(lines[i])
            i += 1
        # Formulas a blank line apart are separate displays (as in Sphinx).
        formulas = textwrap.dedent("\n".join(body)).strip("\n").split("\n\n")
        if not formulas[0].strip():
            raise ValueError(f"docstring_rst: a '.. math::' directive with no formula:\n{lines}")
        if out and out[-1].strip():
            out.append("")
        for formula in filter(str.strip, formulas):
            formula = textwrap.indent(formula.strip("\n"), indent)
            out += [f"{indent}\\[", *formula.splitlines(), f"{indent}\\]", ""]
    return out


def _table(lines: list[str]) -> list[str]:
    """A simple table (rule, header, rule, rows, rule) as a Markdown table."""
    spans = [m.span() for m in re.finditer(r"=+", lines[0])]

    def cells(line):
        bounds = [start for start, _ in spans[1:]] + [None]
        return [line[s:e].strip() for (s, _), e in zip(spans, bounds, strict=True)]

    header, rows = cells(lines[1]), []
    for line in lines[3:-1]:
        row = cells(line)
        if rows and (not row[0] or not any(row[1:])):
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], row, strict=True)]
        elif any(row):
            rows.append(row)
    table = [header, ["---"] * len(header), *rows]
    return ["| " + " | ".join(row) + " |" for row in table]


def _tables(lines: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(lines):
        if not RULE.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        rules = [j for j in range(i + 1, len(lines)) if RULE.match(lines[j])]
        if len(rules) < 2 or rules[0] != i + 2:
            raise ValueError(f"docstring_rst: a table without header and closing rules:\n{lines}")
        out += _table(lines[i : rules[1] + 1])
        i = rules[1] + 1
    return out


def _doctests(lines: list[str]) -> list[str]:
    out, examples, first_field, i = [], [], None, 0
    while i < len(lines):
        if first_field is None and FIELD.match(lines[i]):
            first_field = len(out)
        if not lines[i].startswith(">>>"):
            out.append(lines[i])
            i += 1
            continue
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        fenced = ["```pycon", *block, "```", ""]
        if first_field is None:
            out += fenced
        else:
            examples += fenced
    if examples:
        out[first_field:first_field] = examples
    return out


def convert(text: str) -> str:
    """``text`` (a dedented docstring) with its reStructuredText forms in Markdown."""
    lines = _doctests(_tables(_math_blocks(text.splitlines())))
    # A role may run over a line break; its formula then keeps the break.
    text = INLINE_MATH.sub(r"\\(\1\\)", "\n".join(lines))
    return ROLE.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", text)


class DocstringRst(griffe.Extension):
    """Rewrites every docstring of the loaded package (see the module docstring)."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
