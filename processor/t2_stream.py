"""spark-submit entry point of the fink_t2 streaming job.

    spark-submit --master spark://127.0.0.1:7077 --jars <connector jars> \\
        processor/t2_stream.py --conf fink_t2/conf/local.toml [--once]

The master and resources come from spark-submit; everything else from the TOML config.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from fink_t2.config import DEFAULT_CONF, load_config
from fink_t2.spark.stream import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", default=str(DEFAULT_CONF))
    parser.add_argument("--once", action="store_true", help="availableNow trigger: drain the topics and exit")
    parser.add_argument("--bootstrap", help="override [kafka] bootstrap_servers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.conf).with_bootstrap(args.bootstrap)
    config = dataclasses.replace(config, spark=dataclasses.replace(config.spark, master=""))  # spark-submit's
    run(config, once=args.once, report=lambda stats: print(stats.summary(), flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
