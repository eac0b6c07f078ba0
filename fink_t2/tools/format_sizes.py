"""Bytes per enriched message in each ``[output] enriched_format``, on real alerts (README figure).

``python -m fink_t2.tools.format_sizes [PATH...]`` (default ``data/alerts``) classifies the alerts
as the stream's workers do and prints, as JSON, the mean size of the container message, of the
schemaless one (value + its fingerprint header as Kafka stores it: name, value and their two
1-byte length varints) and the bytes saved per message.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence

from fink_t2.alerts.sources import iter_alert_inputs
from fink_t2.config import REPO_ROOT
from fink_t2.kafka.messages import enrich_alert, enrich_alert_schemaless
from fink_t2.science.classify import classify

#: The two length varints of one record header (key and value shorter than 64 B: one byte each).
HEADER_VARINT_BYTES = 2


def format_sizes(paths: Sequence[str]) -> dict[str, float]:
    """Mean bytes per enriched message in each format over the alerts under ``paths`` that the stream
    enriches (ok and cut), and the saving (mean, min, max) of schemaless over container."""
    payloads = [item.payload for item in iter_alert_inputs(paths) if item.payload is not None]
    rows = classify(payloads).to_dict("records")
    container, schemaless = [], []
    for payload, row in zip(payloads, rows):
        if row["t2_status"].startswith("error:"):
            continue
        value, schema = enrich_alert_schemaless(payload, row)
        name, fingerprint = schema.header
        container.append(len(enrich_alert(payload, row)))
        schemaless.append(len(value) + len(name) + len(fingerprint) + HEADER_VARINT_BYTES)
    saved = [c - s for c, s in zip(container, schemaless)]
    return {"alerts": len(saved), "container_mean_bytes": statistics.fmean(container),
            "schemaless_mean_bytes": statistics.fmean(schemaless), "saved_mean_bytes": statistics.fmean(saved),
            "saved_min_bytes": min(saved), "saved_max_bytes": max(saved),
            "saved_fraction": statistics.fmean(saved) / statistics.fmean(container)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("paths", nargs="*", default=[str(REPO_ROOT / "data" / "alerts")])
    print(json.dumps(format_sizes(parser.parse_args(argv).paths), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
