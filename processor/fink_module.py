"""The t2 Fink science module, fink-science style (``processor.py`` of a module): the UDFs of
``fink_t2.spark.fink_udf``, where their doctests are. In raw2science::

    from processor.fink_module import maxclass, t2
    df = df.withColumn("t2", t2("candid", "cjd", "cfid", "cmagpsf", "csigmapsf", "roid", "cdsxmatch",
                                "candidate.jdstarthist"))
    df = df.withColumn("t2_maxclass", maxclass("t2"))

An installed package gives the same objects as ``from fink_t2.spark.fink_udf import ...``.
"""
from fink_t2.spark.fink_udf import (
    FINK_COLUMNS, T2_SIGNED_COLUMNS, T2_TYPE, concat_columns, maxclass, t2, t2_filter, t2_signed, t2_udf,
)

__all__ = ["FINK_COLUMNS", "T2_SIGNED_COLUMNS", "T2_TYPE", "concat_columns", "maxclass", "t2", "t2_filter",
           "t2_signed", "t2_udf"]
