"""Labels: PLAsTiCC class ids and the BTS / ALeRCE type → t2 class mapping.

The mapping is defined once here and documented in ``docs/table1.md``. Rules (by the
spectroscopic type string of the ZTF Bright Transient Survey table):

* ``SN Ia``, ``SN Ia-91T``, ``SN Ia-pec`` → ``SNIa``. ``SN Ia-91bg`` → ``SNIa-91bg`` and ``SN Iax`` →
  ``SNIax``: t2 has a class for each, so the more specific one is used (they count as "rest" in
  the SN Ia-vs-rest AUC). ``SN Ia-CSM`` is excluded (its light curve is dominated by interaction,
  unlike any PLAsTiCC SN Ia model).
* ``SN II``, ``SN IIP``, ``SN IIb``, ``SN IIn``, ``SN II-pec`` (any ``SN II*``) → ``SNII`` (PLAsTiCC
  class 42 includes IIn and IIP/IIL templates).
* ``SN Ib``, ``SN Ic``, ``SN Ic-BL``, ``SN Ib/c``, ``SN Ib-pec``, ``SN Ibn``, ``SN Icn`` (any
  ``SN Ib*``/``SN Ic*``) → ``SNIbc``.
* ``SLSN-I`` → ``SLSN-I``; ``TDE`` (and ALeRCE/TNS ``TDE-*``) → ``TDE``.
* Everything else (``SLSN-II``, ``nova``, ``LBV``, ``ILRT``, ``LRN``, ``Ca-rich``, ``other``, …) is
  excluded: t2 has no class for it.

ALeRCE labels (``SNIa``, ``SNIbc``, ``SNII``, ``SLSN``) map to the same classes; ALeRCE ``SLSN``
does not separate type I from II and is mapped to ``SLSN-I``.
"""
from __future__ import annotations

from fink_t2.contract import CLASS_NAMES, PLASTICC_IDS

#: PLAsTiCC ``target`` id → output index.
PLASTICC_ID_TO_INDEX: dict[int, int] = {pid: i for i, pid in enumerate(PLASTICC_IDS)}
#: Class name → output index.
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
SNIA = CLASS_INDEX["SNIa"]

_EXACT: dict[str, str] = {
    "SN Ia": "SNIa", "SN Ia-91T": "SNIa", "SN Ia-pec": "SNIa",
    "SN Ia-91bg": "SNIa-91bg", "SN Iax": "SNIax",
    "SLSN-I": "SLSN-I", "TDE": "TDE",
    # ALeRCE light-curve classifier taxonomy
    "SNIa": "SNIa", "SNII": "SNII", "SNIbc": "SNIbc", "SLSN": "SLSN-I",
}
_EXCLUDED: frozenset[str] = frozenset({"SN Ia-CSM", "SLSN-II"})


def bts_class(type_name: str | None) -> str | None:
    """The t2 class name of a BTS/ALeRCE/TNS type string, or None when excluded."""
    if type_name is None:
        return None
    name = str(type_name).strip()
    if name in _EXCLUDED:
        return None
    if name in _EXACT:
        return _EXACT[name]
    if name.startswith("SN II"):
        return "SNII"
    if name.startswith(("SN Ib", "SN Ic")):
        return "SNIbc"
    if name.startswith("TDE"):
        return "TDE"
    return None


def bts_class_index(type_name: str | None) -> int:
    """Output index of :func:`bts_class`, −1 when excluded."""
    name = bts_class(type_name)
    return -1 if name is None else CLASS_INDEX[name]


def mapping_table(type_names) -> list[tuple[str, str]]:
    """(type, class or 'excluded') for each distinct type, sorted by type (for documentation)."""
    return [(t, bts_class(t) or "excluded") for t in sorted(set(type_names))]


#: The BTS downstream task's classes (``fink-t2 downstream``), in label order.
BTS_TASK_CLASSES: tuple[str, ...] = ("SN Ia", "SN II", "SN Ibc", "SLSN", "other")
#: t2 class of :func:`bts_class` → BTS task class; every other type (SN Ia-CSM, nova, TDE, LBV, …) is "other".
_BTS_TASK_OF_T2: dict[str, str] = {"SNIa": "SN Ia", "SNIa-91bg": "SN Ia", "SNIax": "SN Ia", "SNII": "SN II",
                                   "SNIbc": "SN Ibc", "SLSN-I": "SLSN"}


def bts_task_class(type_name: str | None) -> str:
    """The BTS downstream class of a BTS type string: the :func:`bts_class` grouping, with SN Ia subtypes
    in "SN Ia", SLSN-I and SLSN-II in "SLSN", and every remaining type in "other"."""
    if type_name is not None and str(type_name).strip() == "SLSN-II":
        return "SLSN"
    return _BTS_TASK_OF_T2.get(bts_class(type_name), "other")
