"""The README's code example must run as printed."""

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_example_runs(capsys):
    block = re.search(r"## Example\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len([line for line in block.splitlines() if line.strip()]) <= 13
    exec(compile(block, "README.md", "exec"), {})
    assert "elpd" in capsys.readouterr().out.lower()
