"""ASTROMER light-curve encoder at inference: numpy windows and LiteRT (no TensorFlow)."""
