"""The pure numpy/pandas science core, usable without Spark or Kafka:
light curves and cuts (``lightcurve``), the 2-D Gaussian process (``gp``: batched numpy,
the numba-less fallback and reference; ``gp_compiled``: the same algorithm compiled per
alert, used when numba is present), model input (``model_input``), the LiteRT model
(``model``) and the one classification path (``classify``).

Never imports pyspark, confluent_kafka or TensorFlow (``tests/test_layers.py``).
"""
