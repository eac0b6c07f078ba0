"""Decoding layer: Avro container framing (``container``), the schema-compiled decoder
(``compiled``), the fastavro path (``fastavro_path``), the ``AlertBatch`` columns
(``batch``), the entry point ``decode.decode_payloads`` and file/archive inputs (``sources``).

Imports only numpy, fastavro, numba (optional) and ``fink_t2.contract``/``config``.
"""
