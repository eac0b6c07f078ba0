"""``python -m fink_t2.train {train,compress,evaluate,report}``: the training commands without the main CLI."""
from __future__ import annotations

import argparse
import logging
import sys

from fink_t2.train.cli import add_train_parsers, add_report_parser


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fink_t2.train", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parsers(sub)
    add_report_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
