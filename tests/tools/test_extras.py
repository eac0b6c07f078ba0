"""Optional dependencies: the core commands run without them; the tools that need them say which
``pip install 'fink_t2[EXTRA]'`` to run, before starting anything.

Each case runs the CLI in a fresh interpreter whose import system refuses the optional modules
(as if they were not installed).
"""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from fink_t2.tools.extras import EXTRA_MODULES, MissingExtraError, require_extra
from tests.conftest import REPO, SAMPLE_ALERTS

OPTIONAL = sorted({module for modules in EXTRA_MODULES.values() for module in modules} | {"george"})

_WITHOUT = """
import sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None
sys.meta_path.insert(0, NotInstalled())
from fink_t2.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli_without(blocked: list[str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _WITHOUT.format(blocked=blocked), *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_classify_needs_no_optional_dependency(tmp_path):
    out = tmp_path / "rows.parquet"
    folder = SAMPLE_ALERTS / "fink-alert-simulator_datasim_20181129"
    result = _cli_without(OPTIONAL, "classify", str(folder), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert len(pd.read_parquet(out)) == len(list(folder.glob("*.avro")))


@pytest.mark.parametrize(("argv", "extra", "module"), [
    (["plot", str(SAMPLE_ALERTS), "--candid", "697251920415015001", "--out", "x.png"], "plot", "matplotlib"),
    (["demo"], "plot", "matplotlib"),
    (["demo"], "stream", "pyspark"),
    (["stream", "--once"], "stream", "pyspark"),
    (["cluster", "status"], "stream", "pyspark"),
    (["bench", "--quick", "--no-stream"], "bench", "scipy"),
])
def test_tools_name_the_extra_to_install_before_starting(argv, extra, module):
    result = _cli_without([module], *argv)
    assert result.returncode == 2
    assert f"needs {module}" in result.stderr and f"pip install 'fink_t2[{extra}]'" in result.stderr
    assert result.stdout == ""  # nothing ran: no broker, no replay, no benchmark


def test_require_extra_passes_when_installed_and_names_what_is_missing():
    require_extra("bench", "the benchmark")  # the test environment has every extra
    with pytest.raises(MissingExtraError, match=r"x needs .*fink_t2\[plot\]"):
        _require_with_missing_module("plot")


def _require_with_missing_module(extra: str) -> None:
    saved = EXTRA_MODULES[extra]
    EXTRA_MODULES[extra] = ("fink_t2_no_such_module",)
    try:
        require_extra(extra, "x")
    finally:
        EXTRA_MODULES[extra] = saved
