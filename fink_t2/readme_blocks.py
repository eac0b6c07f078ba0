"""Generated blocks of the README: text between two marker lines, written by the command the
begin marker names (bench figures, LSST-night latency, model figures), never edited by hand."""
from __future__ import annotations

from pathlib import Path


def _bounds(text: str, readme: Path, begin: str, end_marker: str) -> tuple[int, int]:
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"{readme} has no markers ({begin!r} … {end_marker!r})")
    return start, end


def read_readme_block(readme: Path, begin: str, end_marker: str) -> str:
    """The block of ``readme`` from ``begin`` to ``end_marker``, both markers included."""
    text = readme.read_text()
    start, end = _bounds(text, readme, begin, end_marker)
    return text[start:end + len(end_marker)]


def write_readme_block(readme: Path, block: str, begin: str, end_marker: str) -> None:
    """Replace the text of ``readme`` from ``begin`` to ``end_marker`` (markers included) with ``block``."""
    text = readme.read_text()
    start, end = _bounds(text, readme, begin, end_marker)
    readme.write_text(text[:start] + block + text[end + len(end_marker):])
