"""The Python-worker side of the stream, without Spark or Kafka: routing and output frames."""
from __future__ import annotations

import pyarrow as pa
import pytest
from pyspark.sql.pandas.serializers import ArrowStreamPandasUDFSerializer
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import BinaryType, StringType, StructField, StructType

from fink_t2.spark.stream import _frame

#: OUTPUT_SCHEMA as a Spark type (parsing the DDL string needs a running session)
OUTPUT_TYPE = StructType([StructField("topic", StringType()), StructField("key", BinaryType()),
                          StructField("value", BinaryType())])


def to_spark_arrow(frame) -> pa.RecordBatch:
    """What Spark does with a ``mapInPandas`` result: its Arrow conversion of the returned frame."""
    serializer = ArrowStreamPandasUDFSerializer("UTC", False, True, True, "dict", False)
    return serializer._create_batch([(frame, to_arrow_type(OUTPUT_TYPE))])


@pytest.mark.parametrize("messages", [[], [("enriched", b"42", b"\x00avro")]], ids=["empty", "one"])
def test_output_frame_converts_to_arrow_even_when_empty(messages):
    # An all-dead-letter batch in python mode returns no row to Spark: the empty frame used to have
    # float64 columns and Spark's conversion raised "Expected Array, got ChunkedArray".
    batch = to_spark_arrow(_frame(messages))
    assert batch.num_rows == len(messages)
    assert [row["_0"] for row in batch.to_pylist()] == [dict(zip(("topic", "key", "value"), m)) for m in messages]
