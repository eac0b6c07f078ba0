"""The wheel is a working install: models, their metadata and the config templates are inside it,
and ``fink-t2 classify`` finds them from any working directory, in a fresh venv.

The fresh venv gets the wheel with ``--no-deps``; its dependencies come from this interpreter's
site-packages through a ``.pth`` line (nothing is downloaded). A ``.pth`` line only appends a
folder to ``sys.path`` (the ``.pth`` files inside that folder are not run), so the editable install
of the checkout stays invisible and the venv imports the wheel's copy.
"""
from __future__ import annotations

import ast
import email.parser
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pandas as pd
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fink_t2.cli import classify_paths
from fink_t2.science.model import DEFAULT_MODEL_ID
from fink_t2.tools.extras import EXTRA_MODULES
from tests.conftest import REPO, SAMPLE_ALERTS

PACKAGED = (f"fink_t2/data/models/{DEFAULT_MODEL_ID}.tflite", f"fink_t2/data/models/{DEFAULT_MODEL_ID}.json",
            "fink_t2/data/models/fink-t2-quantized-28341.tflite", "fink_t2/data/models/fink-t2-quantized-28341.json",
            "fink_t2/data/models/fink-t2-astromer-gr.tflite", "fink_t2/data/models/fink-t2-astromer-gr.json",
            "fink_t2/data/models/LICENSE.fink-science", "fink_t2/conf/local.toml",
            "fink_t2/conf/cluster.example.toml", "fink_t2/conf/log4j-kafka.properties",
            *(f"fink_t2/data/schemas/ztf/{v}.avsc" for v in ("2.0", "3.0", "3.1", "3.2", "3.3", "3.5", "4.02")))


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a clean copy of the sources (no stale ``build/`` of the checkout)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copy(REPO / "setup.py", src)
    shutil.copytree(REPO / "fink_t2", src / "fink_t2", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, src, cwd=src)
    (built,) = out.glob("fink_t2-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory) -> Path:
    """A new venv holding only the wheel; dependencies visible through a .pth line."""
    venv = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel,
         cwd=venv)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=venv)
                .stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH (which would put the checkout first)."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def test_wheel_carries_models_metadata_and_config_templates(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in PACKAGED if name not in names]
    assert not missing, f"not in the wheel: {missing}"


def _requirements(wheel: Path) -> tuple[set[str], dict[str, set[str]]]:
    """(core distribution names, extra -> distribution names) from the wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    core, extras = set(), {}
    for requirement in map(Requirement, metadata.get_all("Requires-Dist")):
        match = re.search(r'extra == "(\w+)"', str(requirement.marker or ""))
        (extras.setdefault(match[1], set()) if match else core).add(canonicalize_name(requirement.name))
        if requirement.name == "pyarrow":
            assert any(spec.operator == "<" for spec in requirement.specifier), "pyarrow needs an upper bound"
    return core, extras


def test_streaming_install_leaves_the_tool_dependencies_to_extras(wheel: Path):
    core, extras = _requirements(wheel)
    distributions = packages_distributions()
    for extra, modules in EXTRA_MODULES.items():
        for module in modules:
            dist = canonicalize_name(distributions[module][0])
            assert dist not in core, f"{dist} ({module}) is a core requirement; only [{extra}] needs it"
            assert dist in extras[extra], f"[{extra}] lacks {dist} ({module})"
    assert "pyarrow" in core and "pyspark" not in core


def test_the_stream_pins_pyspark_and_the_fink_extra_takes_a_fink_deployment_s(wheel: Path):
    """[stream]: the pyspark of the Kafka connector jars (jvm/spark/pom.xml); [fink]: PySpark 3.4 to 4.0."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requirements = list(map(Requirement, email.parser.Parser().parsestr(archive.read(name).decode())
                                .get_all("Requires-Dist")))
    pyspark = {re.search(r'extra == "(\w+)"', str(r.marker))[1]: r.specifier for r in requirements if r.name == "pyspark"}
    connector = re.search(r"<spark.version>([^<]+)</spark.version>", (REPO / "jvm" / "spark" / "pom.xml").read_text())
    assert str(pyspark["stream"]) == f"=={connector[1]}"
    assert [v for v in ("3.3.4", "3.4.0", "3.5.9", "4.0.0", "4.1.0") if pyspark["fink"].contains(v)] == \
        ["3.4.0", "3.5.9", "4.0.0"]


def test_installed_wheel_classifies_from_any_directory(fresh_venv: Path, tmp_path: Path):
    """Same rows as the checkout: the installed package found its own default model."""
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = _clean_env()
    where = _run(fresh_venv / "bin" / "python", "-c", "import fink_t2; print(fink_t2.__file__)", cwd=workdir, env=env)
    assert where.stdout.startswith(str(fresh_venv)), where.stdout
    _run(fresh_venv / "bin" / "fink-t2", "classify", SAMPLE_ALERTS, "--out", "rows.parquet", cwd=workdir, env=env)
    rows = pd.read_parquet(workdir / "rows.parquet")
    expected = classify_paths([str(SAMPLE_ALERTS)])
    assert len(rows) == len(expected) == 139
    assert set(rows["t2_model"]) == {DEFAULT_MODEL_ID}
    # same code, same model file, same libraries on the same machine: the same numbers, bit for bit
    for column in ("objectId", "candid", "t2_status", "t2_class", "t2_snia"):
        assert rows[column].tolist() == expected[column].tolist(), column


def test_installed_wheel_has_its_config_templates(fresh_venv: Path, tmp_path: Path):
    fink_t2 = fresh_venv / "bin" / "fink-t2"
    checked = _run(fink_t2, "config", "check", cwd=tmp_path, env=_clean_env())
    assert f"{fresh_venv}" in checked.stdout and "valid" in checked.stdout  # the packaged local.toml
    template = _run(fink_t2, "config", "template", "cluster", cwd=tmp_path, env=_clean_env())
    assert template.stdout == (REPO / "fink_t2" / "conf" / "cluster.example.toml").read_text()


# ------------------------------------------------------------------ Python 3.9 (the Fink UDFs)
#: the oldest Python a Fink deployment runs, and the package with its UDFs must import on it
OLDEST_PYTHON = (3, 9)
#: keyword arguments that appeared after Python 3.9: (callable name, keyword)
NEWER_KEYWORDS = {("dataclass", "slots"), ("dataclass", "kw_only"), ("zip", "strict")}
BUILTIN_TYPES = {"str", "int", "float", "bool", "bytes", "dict", "list", "tuple", "set", "frozenset", "type"}


def fink_udf_modules() -> list[Path]:
    """The files of every fink_t2 module that importing the Fink UDF module loads."""
    code = ("import sys, fink_t2.spark.fink_udf; "
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('fink_t2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return sorted(Path(line) for line in out.split())


def _is_type_union(node: ast.AST) -> bool:
    """``X | Y`` where a side is None or a builtin type: evaluated, it needs Python 3.10."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)):
        return False
    sides = (node.left, node.right)
    return any((isinstance(s, ast.Constant) and s.value is None) or (isinstance(s, ast.Name) and s.id in BUILTIN_TYPES)
               or _is_type_union(s) for s in sides)


def newer_python_uses(source: str, name: str) -> list[str]:
    """What in ``source`` would fail on ``OLDEST_PYTHON``: syntax (ast's ``feature_version``), then the
    runtime uses of newer features that syntax alone does not show."""
    try:
        tree = ast.parse(source, name, feature_version=OLDEST_PYTHON)
    except SyntaxError as exc:
        return [f"{name}:{exc.lineno}: syntax newer than {OLDEST_PYTHON}: {exc.msg}"]
    postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                    any(a.name == "annotations" for a in n.names) for n in tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            found += [f"{name}:{node.lineno}: {callee}({k.arg}=...)" for k in node.keywords
                      if (callee, k.arg) in NEWER_KEYWORDS]
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node in tree.body and _is_type_union(node.value):
            found.append(f"{name}:{node.lineno}: a type union `X | Y` evaluated at import")
        if not postponed and isinstance(node, (ast.arg, ast.FunctionDef)):
            annotation = node.annotation if isinstance(node, ast.arg) else node.returns
            if annotation is not None and _is_type_union(annotation):
                found.append(f"{name}:{node.lineno}: annotation `X | Y` without postponed annotations")
    found += [f"{name}:{n.lineno}: unguarded `import tomllib` (3.11)" for n in tree.body
              if isinstance(n, ast.Import) and any(a.name == "tomllib" for a in n.names)]
    return found


def test_the_fink_udf_imports_only_python_39_code():
    """Syntax by ast's feature_version (and python3.9's compiler where it is installed), runtime uses
    by the rules of ``newer_python_uses``; ``test_fink_udf_pyspark35.py`` then runs it for real."""
    modules = fink_udf_modules()
    assert any(p.name == "fink_udf.py" for p in modules) and any(p.name == "classify.py" for p in modules)
    problems = [p for path in modules for p in newer_python_uses(path.read_text(), str(path.relative_to(REPO)))]
    assert not problems, "\n".join(problems)
    python39 = shutil.which("python3.9")
    if python39 and subprocess.run([python39, "-c", ""], capture_output=True).returncode == 0:  # not a dead shim
        compile_all = "import sys\nfor f in sys.argv[1:]:\n    compile(open(f).read(), f, 'exec')"
        compiled = subprocess.run([python39, "-c", compile_all, *map(str, modules)], capture_output=True, text=True)
        assert compiled.returncode == 0, compiled.stderr


@pytest.mark.parametrize("source", [
    "@dataclass(eq=False, slots=True)\nclass A:\n    x: int = 0\n",
    "pairs = list(zip(a, b, strict=True))\n",
    "Endpoint = str | Conf\n",
    "def f(x: int | None) -> None: ...\n",
    "import tomllib\n",
    "match x:\n    case 1: pass\n",
])
def test_the_python_39_check_sees_newer_code(source):
    assert newer_python_uses(source, "m.py"), source


def test_the_python_39_check_accepts_what_39_runs():
    source = ("from __future__ import annotations\nimport sys\nFLAGS = READ | WRITE\n"
              "def f(x: int | None) -> str | None: ...\nif sys.version_info >= (3, 11):\n    import tomllib\n")
    assert newer_python_uses(source, "m.py") == []
