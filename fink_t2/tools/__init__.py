"""Tools on top of the pipeline: the benchmark (``bench``) with its per-alert reference path
(``reference_gp``, ``reference_path``: what the deployed Fink module does, george/scipy GP and
one invoke per alert; never used by the stream), the demo (``demo``) and plots (``plot``)."""
