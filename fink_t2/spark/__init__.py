"""Spark layer, the only place that imports pyspark: the streaming job (``stream``) and the
local standalone cluster (``cluster``)."""
