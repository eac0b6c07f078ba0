"""Training, compression and evaluation of t2 models (issue #4).

TensorFlow, tf_keras and tfmot (the ``[train]`` extra) are imported lazily: ``metrics``,
``labels``, ``data`` and ``evaluate`` work with the inference install alone.
"""
