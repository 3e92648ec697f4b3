"""Run NumPyro's own autoguide tests with this library's guides added to their parametrisations.

NumPyro's ``test/infer/test_autoguide.py`` is read from a NumPyro git repository (a clone or
a bare mirror) at the revision matching the installed NumPyro, copied to a temporary
directory, and patched there (nothing of it enters this repository):

- ``from numpyro_ext.guides import AutoFlow`` is added to its imports;
- every ``auto_class`` parametrisation that lists ``AutoIAFNormal`` (NumPyro's own flow guide,
  the closest relative of :class:`~numpyro_ext.guides.AutoFlow`) also lists ``AutoFlow``;
- every ``auto_classes`` pair ``(AutoNormal, AutoIAFNormal)`` of the ``AutoGuideList`` tests
  gains ``(AutoNormal, AutoFlow)``;
- where a test expects NumPyro's flow guides ``(AutoIAFNormal, AutoBNAFNormal)`` to refuse a
  model with one latent dimension (``ValueError``: "latent dim = 1. Consider using
  AutoDiagonalNormal instead"), AutoFlow is held to the same: a coupling flow has nothing to
  couple in one dimension, and AutoFlow refuses it with the same words.

Only the added cases run (a collection hook keeps the items whose parameters include
``AutoFlow``); the script prints pytest's summary with the reason of every failure.

The amortised guides (``AmortizedNormal``, ``AmortizedMultivariateNormal``,
``AmortizedFlow``) are not added: every model in NumPyro's file has global latents only (or
local latents inside ``scan``), while an amortised guide covers the local latents of one plate
given per-datum inputs and an encoder; no test there can apply. They go through the same
round trips (``sample_posterior``, ``median``, ``quantiles``, ``Predictive``,
``AutoGuideList``, the three ELBOs) in ``tests/conformance/test_guides.py``.

Usage (from the repository root)::

    python scripts/run_numpyro_autoguide_tests.py --numpyro-repo PATH [--rev REV]

``REV`` defaults to the installed NumPyro's version tag (``0.22.0``); where the repository has
no such tag pass the nearest revision and say so when quoting the result.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

TEST_FILE = "test/infer/test_autoguide.py"
CONFTEST = "test/conftest.py"
KEEP_OURS = """

def pytest_collection_modifyitems(config, items):
    # Run only the cases this library added: their parameters mention AutoFlow.
    def params(item):
        return repr(item.callspec.params) if hasattr(item, "callspec") else ""

    ours = [i for i in items if "AutoFlow" in params(i)]
    config.hook.pytest_deselected(items=[i for i in items if i not in ours])
    items[:] = ours
"""


def git_show(repo: Path, rev: str, path: str) -> str:
    """The text of ``path`` at ``rev`` in ``repo`` (a work tree or a bare repository)."""
    git_dir = repo / ".git" if (repo / ".git").exists() else repo
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{rev}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def add_our_guides(source: str) -> tuple[str, int]:
    """Patch NumPyro's test source; return it and the number of parametrisations extended."""
    source = source.replace(
        "from numpyro.infer.autoguide import (",
        "from numpyro_ext.guides import AutoFlow\nfrom numpyro.infer.autoguide import (",
        1,
    )
    source, single = re.subn(
        r"^(\s{8})AutoIAFNormal,\n", r"\1AutoIAFNormal,\n\1AutoFlow,\n", source, flags=re.M
    )
    source, pairs = re.subn(
        r"^(\s{8})\(AutoNormal, AutoIAFNormal\),\n",
        r"\1(AutoNormal, AutoIAFNormal),\n\1(AutoNormal, AutoFlow),\n",
        source,
        flags=re.M,
    )
    source, refusals = re.subn(
        r"auto_class in \(AutoIAFNormal, AutoBNAFNormal\)",
        "auto_class in (AutoIAFNormal, AutoBNAFNormal, AutoFlow)",
        source,
    )
    return source, single + pairs + refusals


def main() -> int:
    import numpyro

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numpyro-repo", type=Path, required=True)
    parser.add_argument("--rev", default=numpyro.__version__)
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = parser.parse_args()

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tests = Path(tmp) / "test"
        (tests / "infer").mkdir(parents=True)
        source, count = add_our_guides(git_show(args.numpyro_repo, args.rev, TEST_FILE))
        (tests / "infer" / "test_autoguide.py").write_text(source)
        conftest = git_show(args.numpyro_repo, args.rev, CONFTEST) + KEEP_OURS
        (tests / "conftest.py").write_text(conftest)
        print(f"NumPyro {numpyro.__version__} installed; tests from revision {args.rev}; "
              f"AutoFlow added to {count} parametrisations")  # fmt: skip
        env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"]
        command += [str(tests / "infer" / "test_autoguide.py")]
        return subprocess.run(command + args.pytest_args, cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
