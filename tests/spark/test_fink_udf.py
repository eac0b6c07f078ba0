"""The Fink science-module UDFs in a local Spark: doctests on Fink's Parquet alerts, the same numbers
as the Spark-free path, bad rows as sentinels, one model load per Python worker.

Runs under our pyspark 4.0.0 and, through ``test_fink_udf_pyspark35.py``, under PySpark 3.5 (so
it uses nothing newer than Python 3.9 and PySpark 3.4 provide).
"""
from __future__ import annotations

import doctest
import math
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fink_t2.contract import CLASS_NAMES
from fink_t2.science.fink_columns import FINK_COLUMNS, NOT_CLASSIFIED, fink_scores
from fink_t2.science.model import LOAD_LOG_ENV
from tests.conftest import DATATEST_SNIA_MARGIN, DATATEST_SNIA_P, shared_path

pytestmark = [pytest.mark.integration, pytest.mark.shared]

#: rows per Arrow batch in these sessions: the 124 datatest alerts make ≥ 16 batches per query
ARROW_BATCH = 8


@pytest.fixture(scope="module")
def load_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("loads") / "model-loads.txt"


@pytest.fixture(scope="module")
def spark(load_log):
    """A local[2] session whose Python workers log every model load to ``load_log``."""
    os.environ.update({"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
                       "SPARK_LOCAL_IP": "127.0.0.1", LOAD_LOG_ENV: str(load_log)})
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:  # a session started without the load log would be reused
        active.stop()
    session = (SparkSession.builder.master("local[2]").appName("fink_t2-fink-udf")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH))
               .config("spark.sql.shuffle.partitions", "2")
               .config(f"spark.executorEnv.{LOAD_LOG_ENV}", str(load_log))
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    os.environ.pop(LOAD_LOG_ENV, None)


@pytest.fixture(scope="module")
def fink_parquet() -> Path:
    return shared_path("data", "ztf", "parquet")


def test_doctests_of_the_fink_module(spark, fink_parquet):
    from fink_t2.spark import fink_udf

    result = doctest.testmod(fink_udf, extraglobs={"spark": spark, "fink_parquet": str(fink_parquet)},
                             optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted >= 12, result
    assert result.failed == 0, result


def _oracle_columns(folder: Path) -> dict[str, list]:
    """Fink's columns built from the Parquet rows with pyarrow (not Spark): history then candidate."""
    rows = [r for f in sorted(folder.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    columns: dict[str, list] = {name: [] for name in FINK_COLUMNS}
    for row in rows:
        history = (row["prv_candidates"] or []) + [row["candidate"]]
        for name in ("jd", "fid", "magpsf", "sigmapsf"):
            columns[f"c{name}"].append([math.nan if p[name] is None else p[name] for p in history])
        columns["candid"].append(row["candid"])
        columns["roid"].append(row["roid"])
        columns["cdsxmatch"].append(row["cdsxmatch"])
        columns["jdstarthist"].append(row["candidate"]["jdstarthist"])
    return columns


def test_spark_gives_the_numbers_of_the_spark_free_path(spark, fink_parquet):
    """Every datatest alert: Spark's concat + UDF = pyarrow columns + ``fink_scores``, to float32."""
    from fink_t2.spark.fink_udf import concat_columns, t2

    folder = fink_parquet / "fink-science" / "datatest"
    expected = _oracle_columns(folder)
    scores = fink_scores(expected)
    by_candid = dict(zip(expected["candid"], scores.probabilities))
    rows = (concat_columns(spark.read.parquet(str(folder))).withColumn("t2", t2(*FINK_COLUMNS))
            .select("candid", "t2").collect())
    assert len(rows) == len(by_candid) == 124
    assert sum(s == "ok" for s in scores.status) == 3
    for row in rows:
        want = by_candid[row.candid]
        assert sorted(row.t2) == sorted(CLASS_NAMES)
        # the map holds float32: a probability in [0, 1] is rounded by at most 2**-24
        assert np.allclose([row.t2[c] for c in CLASS_NAMES], [want[c] for c in CLASS_NAMES], rtol=0, atol=2**-24)


def test_bad_rows_get_the_sentinels_and_the_rest_goes_on(spark, fink_parquet):
    """A row with arrays of unequal length and one with a null array, beside a real alert."""
    from pyspark.sql import functions as F

    from fink_t2.spark.fink_udf import concat_columns, maxclass, t2

    real = (concat_columns(spark.read.parquet(str(fink_parquet / "fink-science" / "datatest")))
            .filter(F.col("candid") == 1786383461515015008).select(*FINK_COLUMNS))
    unequal = real.withColumn("candid", F.lit(1)).withColumn("cfid", F.slice("cfid", 1, 2))
    null_magnitudes = real.withColumn("candid", F.lit(2)).withColumn("cmagpsf", F.lit(None).cast("array<float>"))
    rows = {r.candid: r for r in (real.unionByName(unequal).unionByName(null_magnitudes).coalesce(1)
                                  .withColumn("t2", t2(*FINK_COLUMNS)).withColumn("maxclass", maxclass("t2"))
                                  .collect())}
    assert rows[1786383461515015008].maxclass == "SNIa"
    assert abs(rows[1786383461515015008].t2["SNIa"] - DATATEST_SNIA_P) < DATATEST_SNIA_MARGIN
    for bad in (1, 2):
        assert rows[bad].maxclass == "" and set(rows[bad].t2.values()) == {NOT_CLASSIFIED}


def test_model_is_loaded_once_per_python_worker(spark, fink_parquet, load_log):
    """16 Arrow batches of 8 alerts on 2 cores: each Python worker process built the interpreter once."""
    from fink_t2.spark.fink_udf import concat_columns, t2

    alerts = concat_columns(spark.read.parquet(str(fink_parquet / "fink-science" / "datatest"))).repartition(2)
    assert alerts.withColumn("t2", t2(*FINK_COLUMNS)).select("t2").count() == 124
    pids = [line.split()[0] for line in load_log.read_text().splitlines()]  # this module's queries, all of them
    assert 1 <= len(pids) < 124 // ARROW_BATCH, pids  # fewer loads than the batches of this query alone
    assert len(set(pids)) == len(pids), f"a worker loaded the model twice: {pids}"


def test_processor_module_is_the_package_module():
    """``processor/fink_module.py`` (fink-science layout) hands out the package's UDF objects."""
    from fink_t2.spark import fink_udf
    from processor import fink_module

    assert all(getattr(fink_module, name) is getattr(fink_udf, name) for name in fink_module.__all__)


def test_t2_signed_takes_cisdiffpos_as_a_ninth_column(spark, sample_payloads):
    """The repo's sample alerts (30 of the 34 classified have a negative subtraction) through
    ``t2_signed``: the numbers of the Spark-free path with ``cisdiffpos``, to float32."""
    from fink_t2.spark.fink_udf import T2_SIGNED_COLUMNS, maxclass, t2_signed
    from tests.science.test_fink_columns import fink_columns, sample_records

    columns = fink_columns(sample_records(sample_payloads), signed=True)
    expected = fink_scores(columns)
    schema = ("candid long, cjd array<double>, cfid array<int>, cmagpsf array<double>, csigmapsf array<double>, "
              "roid int, cdsxmatch string, jdstarthist double, cisdiffpos array<string>")
    rows = [tuple(np.asarray(v).tolist() if isinstance(v, (list, np.ndarray)) else v for v in row)
            for row in zip(*(columns[name] for name in T2_SIGNED_COLUMNS))]
    scored = (spark.createDataFrame(rows, schema).withColumn("t2", t2_signed(*T2_SIGNED_COLUMNS))
              .withColumn("maxclass", maxclass("t2")).collect())
    by_candid = dict(zip(columns["candid"], expected.probabilities))
    assert len(scored) == 45 and expected.status.count("ok") == 34
    assert sum(row.maxclass != "" for row in scored) == 34
    for row in scored:
        want = by_candid[row.candid]
        assert np.allclose([row.t2[c] for c in CLASS_NAMES], [want[c] for c in CLASS_NAMES], rtol=0, atol=2**-24)
