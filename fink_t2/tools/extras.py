"""Optional dependencies of the tools: which ``pip install 'fink_t2[EXTRA]'`` provides what.

``classify``, ``replay`` and the Fink UDFs' science core need none of them; the streaming job (``stream``,
``demo``, ``cluster``) needs ``[stream]`` (pyspark 4.0.0, the Kafka connector's Spark), the Fink UDFs a
pyspark, ``[fink]`` (3.4 to 4.0, Fink's). ``fink-t2 plot|demo|bench`` check their
extra before starting (a demo must not fail after its whole run, at the summary plot).
The distributions themselves are listed in ``setup.py`` (``extras_require``).
"""
from __future__ import annotations

import importlib

#: modules each extra must make importable
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "stream": ("pyspark",),
    "fink": ("pyspark",),
    "plot": ("matplotlib",),
    "bench": ("matplotlib", "scipy", "threadpoolctl", "psutil"),
    "monitoring": ("prometheus_client",),
}


class MissingExtraError(ImportError):
    """An optional dependency of a command is not installed."""


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    missing = []
    for module in EXTRA_MODULES[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def require_extra(extra: str, purpose: str) -> None:
    """Raise :class:`MissingExtraError` naming the pip command if a module of ``extra`` is missing."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(f"{purpose} needs {', '.join(missing)}, not installed: "
                                f"pip install 'fink_t2[{extra}]'")
