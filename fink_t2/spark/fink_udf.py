"""The t2 Fink science module: pandas UDFs in fink-science style, for PySpark 3.4 to 4.0.

``t2`` takes the columns of Fink's deployed t2 module (``FINK_COLUMNS``: ``candid`` and the
``concat_col`` arrays ``cjd, cfid, cmagpsf, csigmapsf``, then ``roid, cdsxmatch, jdstarthist``)
and returns the same ``MapType(string, float)``: class → probability, every class −1.0 when
the alert is not classified. ``maxclass`` reduces that map to its class ("" when not classified),
``t2_filter`` to a boolean for a distribution topic. ``t2_signed`` also takes ``cisdiffpos``
(negative subtractions keep a negative flux, as in the stream). The classification is
``fink_t2.science.fink_columns`` (our cuts, GP and model); the model is loaded once per Python
worker process (``science.model.load_model`` caches it), not per Arrow batch.

This module runs on Python 3.9 (no annotations are postponed here: pyspark reads the UDF hints).

Examples
--------
``spark`` is a SparkSession, ``fink_parquet`` the folder of Fink's Parquet test alerts
(``../shared/data/ztf/parquet``). ``concat_columns`` builds the ``c*`` arrays as
``raw2science`` does:

>>> alerts = concat_columns(spark.read.parquet(f"{fink_parquet}/fink-science/datatest"))
>>> probabilities = t2("candid", "cjd", "cfid", "cmagpsf", "csigmapsf", "roid", "cdsxmatch", "candidate.jdstarthist")
>>> scored = alerts.withColumn("t2", probabilities).withColumn("maxclass", maxclass("t2")).cache()
>>> one = scored.filter(scored.candid == 1786383461515015008).select("objectId", "maxclass", "t2").first()
>>> one.objectId, one.maxclass
('ZTF21acoshvy', 'SNIa')
>>> round(one.t2["SNIa"], 1)
0.9
>>> sorted(one.t2) == sorted(CLASS_NAMES) and abs(sum(one.t2.values()) - 1) < 1e-5
True

(0.9412 here with the default model `fink-t2-ztf-w5`: the map holds float32, and the GP's round-off
(numba or numpy) and LiteRT's kernels move a probability by far less than the 0.0088 that separates it
from a rounding boundary.)

An alert the cuts reject gets −1.0 for every class and an empty ``maxclass`` (here a variable
star of the fink-broker test night, cut as ``not_extragalactic``; Fink's stored ``t2`` column
holds the same sentinels):

>>> night = concat_columns(spark.read.parquet(f"{fink_parquet}/fink-broker/utest_science"))
>>> night = night.withColumn("ours", t2(*FINK_COLUMNS)).withColumn("maxclass", maxclass("ours"))
>>> star = night.filter(night.objectId == "ZTF18abfisdf").select("cdsxmatch", "maxclass", "ours", "t2").first()
>>> star.cdsxmatch, star.maxclass, set(star.ours.values()), star.ours == dict(star.t2)
('LPV*', '', {-1.0}, True)

The distribution filter, e.g. SN Ia candidates at P(SNIa) ≥ 0.5 (the three classified alerts of
the sample: ZTF21acobels twice, P = 0.66 and 0.73, and ZTF21acoshvy):

>>> snia = scored.filter(t2_filter(("SNIa",), 0.5)("t2"))
>>> sorted(row.objectId for row in snia.select("objectId").collect())
['ZTF21acobels', 'ZTF21acobels', 'ZTF21acoshvy']
>>> scored.filter(t2_filter(("SNIa",), 0.75)("t2")).select("objectId").first().objectId
'ZTF21acoshvy'
"""
from typing import Optional, Sequence

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import BooleanType, FloatType, MapType, StringType

from fink_t2.contract import CLASS_NAMES
from fink_t2.science.fink_columns import (
    ARRAY_FIELDS, FINK_COLUMNS, ISDIFFPOS_COLUMN, fink_scores, as_mappings, max_classes, passes_filter,
)
from fink_t2.science.model import load_model

#: Fink's t2 column type: class name → probability (−1.0 for every class when not classified)
T2_TYPE = MapType(StringType(), FloatType())
#: the columns of ``t2_signed``: Fink's, then ``cisdiffpos``
T2_SIGNED_COLUMNS: tuple = FINK_COLUMNS + (ISDIFFPOS_COLUMN,)
#: the alert fields ``concat_columns`` builds by default: the ones ``t2`` and ``t2_signed`` read
T2_HISTORY_FIELDS: tuple = tuple(ARRAY_FIELDS.values()) + ("isdiffpos",)

__all__ = ["CLASS_NAMES", "FINK_COLUMNS", "T2_SIGNED_COLUMNS", "T2_TYPE", "concat_columns", "maxclass", "t2",
           "t2_filter", "t2_signed", "t2_udf"]


def concat_columns(df: DataFrame, fields: Sequence[str] = T2_HISTORY_FIELDS) -> DataFrame:
    """Fink's ``c<field>`` arrays: ``prv_candidates.<field>`` then ``candidate.<field>``
    (only the candidate when there is no history); nulls (upper limits) stay in the arrays."""
    for name in fields:
        current = F.array(F.col(f"candidate.{name}"))
        history = F.col(f"prv_candidates.{name}")
        df = df.withColumn(f"c{name}", F.when(history.isNull(), current).otherwise(F.concat(history, current)))
    if "jdstarthist" not in df.columns:
        df = df.withColumn("jdstarthist", F.col("candidate.jdstarthist"))
    return df


def t2_udf(model_path: Optional[str] = None, isdiffpos: bool = False):
    """The t2 pandas UDF (columns ``FINK_COLUMNS`` → ``T2_TYPE``) for the model at ``model_path``
    (the packaged default model when None; the same path must exist on every executor).

    With ``isdiffpos`` it takes ``cisdiffpos`` as a ninth column (``T2_SIGNED_COLUMNS``) and
    negative subtractions keep a negative flux, as in the stream and our model's training data.
    """

    def scores(*columns: pd.Series) -> pd.Series:
        named = dict(zip(T2_SIGNED_COLUMNS, columns))
        return pd.Series(fink_scores(named, load_model(model_path)).probabilities)

    if isdiffpos:
        @pandas_udf(T2_TYPE)
        def t2_signed(candid: pd.Series, cjd: pd.Series, cfid: pd.Series, cmagpsf: pd.Series,
                      csigmapsf: pd.Series, roid: pd.Series, cdsxmatch: pd.Series, jdstarthist: pd.Series,
                      cisdiffpos: pd.Series) -> pd.Series:
            return scores(candid, cjd, cfid, cmagpsf, csigmapsf, roid, cdsxmatch, jdstarthist, cisdiffpos)

        return t2_signed

    @pandas_udf(T2_TYPE)
    def t2(candid: pd.Series, cjd: pd.Series, cfid: pd.Series, cmagpsf: pd.Series, csigmapsf: pd.Series,
           roid: pd.Series, cdsxmatch: pd.Series, jdstarthist: pd.Series) -> pd.Series:
        return scores(candid, cjd, cfid, cmagpsf, csigmapsf, roid, cdsxmatch, jdstarthist)

    return t2


#: the t2 module with the packaged default model: Fink's deployed columns
t2 = t2_udf()
#: the same with ``cisdiffpos`` as a ninth column (signed fluxes)
t2_signed = t2_udf(isdiffpos=True)


@pandas_udf(StringType())
def maxclass(probabilities: pd.Series) -> pd.Series:
    """The most probable class of a ``t2`` map, "" when the alert was not classified."""
    return max_classes(probabilities)


def t2_filter(classes: Sequence[str], min_probability: float):
    """A boolean pandas UDF of a ``t2`` map: P(c) ≥ ``min_probability`` for some c in ``classes``
    (never true for a not-classified alert), e.g. ``t2_filter(("SNIa",), 0.5)`` for SN Ia candidates."""
    unknown = sorted(set(classes) - set(CLASS_NAMES))
    if unknown:
        raise ValueError(f"unknown t2 classes {unknown}; known: {', '.join(CLASS_NAMES)}")
    wanted = tuple(classes)

    @pandas_udf(BooleanType())
    def t2_selected(probabilities: pd.Series) -> pd.Series:
        return pd.Series([passes_filter(p, wanted, min_probability) for p in as_mappings(probabilities)], dtype=bool)

    return t2_selected

