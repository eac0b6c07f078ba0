"""Which Kafka cluster and input a checkpoint folder belongs to.

Spark's Kafka offsets in a checkpoint only mean something on the cluster that wrote them: the
same folder used with another broker (``--bootstrap``) or another ``subscribe_pattern`` would
skip or replay alerts silently. The first run writes ``<checkpoint dir>/OWNER_FILE`` (cluster
id, pattern); later runs refuse a mismatch. Read and written through Hadoop's file system API,
so ``hdfs://`` checkpoint folders work like local ones.
"""
from __future__ import annotations

import json
import logging

from fink_t2.config import Config, ConfigError

log = logging.getLogger(__name__)

OWNER_FILE = "fink_t2_source.json"


class CheckpointMismatch(ConfigError):
    """The checkpoint folder was written for another Kafka cluster or input."""


def source_identity(config: Config, cluster: str) -> dict[str, str]:
    """What a checkpoint's offsets refer to: the Kafka cluster id and the subscribed pattern."""
    return {"kafka_cluster_id": cluster, "subscribe_pattern": config.input.subscribe_pattern}


def claim_checkpoint(spark, config: Config, cluster: str) -> None:
    """Record this job's source in its checkpoint folder, or raise :class:`CheckpointMismatch`."""
    path = f"{config.checkpoint_dir().rstrip('/')}/{OWNER_FILE}"
    wanted = source_identity(config, cluster)
    recorded = _read_text(spark, path)
    if recorded is None:
        _write_text(spark, path, json.dumps(wanted | {"bootstrap_servers": config.kafka.bootstrap_servers}))
        return
    owner = json.loads(recorded)
    mismatched = [key for key in wanted if owner.get(key) != wanted[key]]
    if mismatched:
        raise CheckpointMismatch(
            f"checkpoint {config.checkpoint_dir()} belongs to Kafka cluster {owner.get('kafka_cluster_id')} "
            f"(bootstrap {owner.get('bootstrap_servers')}, pattern {owner.get('subscribe_pattern')!r}), not to "
            f"cluster {cluster} (bootstrap {config.kafka.bootstrap_servers}, pattern "
            f"{config.input.subscribe_pattern!r}): {', '.join(mismatched)} differ. Use another [checkpoint] dir "
            f"for this broker or input (or delete that folder to start over from startingOffsets)")


def _hadoop_path(spark, path: str):
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hadoop_path


def _read_text(spark, path: str) -> str | None:
    """The UTF-8 text of ``path``, or None if it does not exist."""
    fs, hadoop_path = _hadoop_path(spark, path)
    if not fs.exists(hadoop_path):
        return None
    stream = fs.open(hadoop_path)
    try:
        return spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def _write_text(spark, path: str, text: str) -> None:
    fs, hadoop_path = _hadoop_path(spark, path)
    stream = fs.create(hadoop_path, True)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()
    log.info("checkpoint %s claimed for %s", path, text)
