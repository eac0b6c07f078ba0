"""The Fink UDF tests again, under the Spark of a Fink deployment: PySpark 3.5 in the second venv
that ``make fink-venv`` builds (``.venv-pyspark35``: the package's ``[fink]`` dependencies only).

``make test`` builds that venv first, so this test never skips there. Elsewhere it fails when the
venv is missing, unless ``FINK_T2_PYSPARK35_OPTIONAL=1`` says the check may be skipped.
"""
from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

VENV = Path(os.environ.get("FINK_T2_PYSPARK35_VENV", REPO / ".venv-pyspark35"))
OPTIONAL_ENV = "FINK_T2_PYSPARK35_OPTIONAL"
#: the tests run inside the PySpark 3.5 venv: the Spark-free core and the UDFs in a local Spark
INNER_TESTS = ("tests/science/test_fink_columns.py", "tests/spark/test_fink_udf.py")
#: variables of this process that would point the inner run at this venv's code or interpreter
LEAKING_ENV = ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME", "VIRTUAL_ENV")


def _python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        if os.environ.get(OPTIONAL_ENV) == "1":
            pytest.skip(f"{python} not found and {OPTIONAL_ENV}=1: the PySpark 3.5 check is skipped")
        pytest.fail(f"{python} not found: run `make fink-venv` (or set {OPTIONAL_ENV}=1 to skip this check)")
    return python


def _inner_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in LEAKING_ENV}


def test_venv_has_pyspark_35_and_this_checkout():
    python = _python()
    out = subprocess.run([str(python), "-c", "import pyspark, fink_t2; print(pyspark.__version__, fink_t2.__file__)"],
                         cwd=REPO, env=_inner_env(), capture_output=True, text=True, timeout=120, check=True).stdout
    version, where = out.split()
    assert version.startswith("3.5."), version
    assert Path(where).resolve().parent == (REPO / "fink_t2").resolve(), where


def test_fink_udf_tests_pass_under_pyspark_35(tmp_path):
    """Every inner test passes; a skip is accepted only for a missing ../shared (and then reported)."""
    report = tmp_path / "inner.xml"
    run = subprocess.run([str(_python()), "-m", "pytest", *INNER_TESTS, "-q", "-p", "no:cacheprovider",
                          f"--junitxml={report}"], cwd=REPO, env=_inner_env(), capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, f"inner pytest under PySpark 3.5 failed:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    cases = ET.parse(report).getroot().iter("testcase")
    skipped = [(case.get("name"), skip.get("message", "")) for case in cases for skip in case.iter("skipped")]
    unexpected = [(name, why) for name, why in skipped if "needs ../shared" not in why]
    assert not unexpected, f"inner tests skipped: {unexpected}"
    if skipped:
        pytest.skip(f"{len(skipped)} inner tests need ../shared: {skipped[0][1]}")
    assert "passed" in run.stdout.splitlines()[-1], run.stdout[-500:]
