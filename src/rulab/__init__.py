"""rulab: how far can you trust an image classifier? OOD detection, calibration, covariate shift and
far-away overconfidence, measured on the same checkpoint, with the protocols of four published works."""

__version__ = "0.1.0"
