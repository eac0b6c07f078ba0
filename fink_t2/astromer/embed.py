"""``fink-t2 embed``: alert files or a CSV light-curve table → one pooled embedding per object (Parquet).

Each output row: ``object_id``, ``candid`` (alerts; −1 for CSV objects), ``status`` (``ok`` or
``error:<reason>``), ``n_obs`` (observations in the encoder window), ``encoder`` (its id) and
``embedding`` (list of float32, the mean over valid observations of the last layer; null unless ok).
A bad object is a row with its reason, never a crash; the rest go on. Rows keep the input order,
and the same input and encoder give the same bytes.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fink_t2.alerts.batch import AlertBatch, records_to_batch
from fink_t2.alerts.decode import decode_payloads
from fink_t2.alerts.sources import AlertInput, iter_alert_inputs
from fink_t2.astromer.encoder import Encoder
from fink_t2.astromer.inputs import LightCurve
from fink_t2.contract import (
    ASTROMER_BAND_INDEX, ASTROMER_INPUT_CONTRACTS, ZTF_FID_TO_ASTROMER_BAND, ZTF_FID_TO_BAND,
)

CSV_COLUMNS = ("object_id", "mjd", "band", "mag", "magerr")
JD_MINUS_MJD = 2_400_000.5
ALERT_CHUNK = 2048  # alerts decoded and embedded per step (bounds memory)
OUTPUT_SCHEMA = pa.schema([("object_id", pa.string()), ("candid", pa.int64()), ("status", pa.string()),
                           ("n_obs", pa.int32()), ("encoder", pa.string()), ("embedding", pa.list_(pa.float32()))])


class EmbedInputError(ValueError):
    """The input as a whole cannot be read (e.g. a CSV without the required columns)."""


@dataclass(frozen=True)
class Item:
    """One object to embed: its light curve, or the reason it has none."""

    object_id: str
    candid: int
    light_curve: LightCurve | None
    error: str | None = None


def _checked(object_id: str, candid: int, mjd, band, mag, magerr) -> Item:
    """An ``Item`` after the per-object checks: some observations, finite times and magnitudes."""
    if len(mjd) == 0:
        return Item(object_id, candid, None, "error:no_observations")
    for name, values in (("mjd", mjd), ("mag", mag)):
        if not np.isfinite(values).all():
            return Item(object_id, candid, None, f"error:non_finite:{name}")
    return Item(object_id, candid, LightCurve(object_id, mjd, band, mag, magerr))


def band_indices(names: Iterable[str], only: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(kept mask, encoder band index) of band names: g/r, or only the band ``only`` (as index 0 / its own)."""
    names = np.asarray([str(n) for n in names], dtype=object)
    if only is not None:
        keep = names == only
        return keep, np.full(len(names), ASTROMER_BAND_INDEX.get(only, 0), np.int8)
    index = np.array([ASTROMER_BAND_INDEX.get(n, -1) for n in names], np.int8)
    return index >= 0, index


def items_from_table(table: pd.DataFrame, band: str | None = None) -> list[Item]:
    """Items of a light-curve table (columns ``CSV_COLUMNS``), one per object, in first-appearance order."""
    missing = [c for c in CSV_COLUMNS if c not in table.columns]
    if missing:
        raise EmbedInputError(f"light-curve table lacks columns {missing} (needs {', '.join(CSV_COLUMNS)})")
    ids = table["object_id"].astype("string").fillna("")
    numeric = {c: pd.to_numeric(table[c], errors="coerce").to_numpy(np.float64) for c in ("mjd", "mag", "magerr")}
    keep, index = band_indices(table["band"].astype(str), band)
    items = []
    for object_id, rows in ids.groupby(ids, sort=False).indices.items():
        if not object_id:
            items.append(Item("", -1, None, "error:missing_object_id"))
            continue
        rows = rows[keep[rows]]
        items.append(_checked(object_id, -1, numeric["mjd"][rows], index[rows], numeric["mag"][rows],
                              numeric["magerr"][rows]))
    return items


def items_from_alerts(batch: AlertBatch, band: str | None = None) -> list[Item]:
    """One item per alert: its g/r detections (or band ``band``), positive subtractions, (jd, fid) deduplicated.

    A negative subtraction's ``magpsf`` is the magnitude of a flux decrease, not the source's: left out.
    """
    items = []
    for row in range(len(batch)):
        object_id = batch.object_id[row] or ""
        candid = int(batch.candid[row])
        if batch.error[row] is not None:
            items.append(Item(object_id, candid, None, f"error:{batch.error[row]}"))
            continue
        points = slice(batch.offsets[row], batch.offsets[row + 1])
        fid = batch.hist_fid[points]
        names = [ZTF_FID_TO_BAND.get(int(f), "") for f in fid]
        keep, index = band_indices(names, band)
        if band is None:
            keep &= np.isin(fid, list(ZTF_FID_TO_ASTROMER_BAND))
        if keep.any() and batch.hist_negative[points][keep].all():
            items.append(Item(object_id, candid, None, "error:only_negative_subtractions"))
            continue
        keep &= ~batch.hist_negative[points]
        jd = batch.hist_jd[points][keep]
        _, first = np.unique(np.stack([jd, fid[keep]]), axis=1, return_index=True)
        first = np.sort(first)
        items.append(_checked(object_id, candid, jd[first] - JD_MINUS_MJD, index[keep][first],
                              batch.hist_mag[points][keep][first], batch.hist_magerr[points][keep][first]))
    return items


def embed_items(items: Sequence[Item], encoder: Encoder) -> pa.Table:
    """The output rows of ``items`` (``OUTPUT_SCHEMA``)."""
    good = [i for i, item in enumerate(items) if item.light_curve is not None]
    batch = encoder.windows([items[i].light_curve for i in good])
    pooled = encoder.pooled(batch) if good else np.zeros((0, encoder.width), np.float32)
    n_obs = np.zeros(len(items), np.int32)
    embeddings: list = [None] * len(items)
    for k, i in enumerate(good):
        n_obs[i] = batch.valid[k].sum()
        embeddings[i] = pooled[k].tolist()
    status = [item.error or ("ok" if n_obs[i] else "error:no_observations") for i, item in enumerate(items)]
    embeddings = [e if s == "ok" else None for e, s in zip(embeddings, status)]
    return pa.table({"object_id": [item.object_id for item in items], "candid": [item.candid for item in items],
                     "status": status, "n_obs": n_obs, "encoder": [encoder.encoder_id] * len(items),
                     "embedding": embeddings}, schema=OUTPUT_SCHEMA)


def _alert_chunks(paths: Sequence[str | Path]) -> Iterator[AlertBatch]:
    chunk: list[AlertInput] = []
    for item in iter_alert_inputs(paths):
        if chunk and ((item.payload is None) != (chunk[0].payload is None) or len(chunk) >= ALERT_CHUNK):
            yield _decode(chunk)
            chunk = []
        chunk.append(item)
    if chunk:
        yield _decode(chunk)


def _decode(chunk: list[AlertInput]) -> AlertBatch:
    if chunk[0].payload is not None:
        return decode_payloads([item.payload for item in chunk])
    return records_to_batch([item.record for item in chunk], [item.error for item in chunk])


def is_table(path: Path) -> bool:
    """A CSV light-curve table (else alert files)."""
    return path.suffix.lower() == ".csv"


def embed_path(path: str | Path, encoder: Encoder, band: str | None = None) -> pa.Table:
    """Every object of ``path`` (a .csv table, or alert files / folders as ``classify`` reads)."""
    path = Path(path)
    if band is not None and encoder.meta["input_contract"] != ASTROMER_INPUT_CONTRACTS[0] and band not in ASTROMER_BAND_INDEX:
        raise EmbedInputError(f"--band {band!r}: encoder {encoder.encoder_id} knows bands {sorted(ASTROMER_BAND_INDEX)}")
    if is_table(path):
        try:
            # all as text, no NA guessing: an object named "nan" or "NA" stays itself; numbers parsed after
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise EmbedInputError(f"{path}: not a readable CSV table: {exc}") from exc
        return embed_items(items_from_table(table, band), encoder)
    tables = [embed_items(items_from_alerts(batch, band), encoder) for batch in _alert_chunks([path])]
    return pa.concat_tables(tables) if tables else OUTPUT_SCHEMA.empty_table()


def write_embeddings(table: pa.Table, out: Path) -> None:
    """Parquet, written the same way every time (no timestamps: identical input → identical bytes)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
