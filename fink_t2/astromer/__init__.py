"""ASTROMER: the self-supervised light-curve encoder at inference (numpy + LiteRT, no TensorFlow)."""
