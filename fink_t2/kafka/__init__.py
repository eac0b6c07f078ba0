"""Kafka layer: the local broker (``broker``), the worker producer (``producer``), replay
of alert files (``replay``), reading topics back (``topics``) and the output messages
(``messages``: enriched alert, score, dead letter). No pyspark here.
"""
