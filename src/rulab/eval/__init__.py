"""Evaluation: cached forward passes, OOD / calibration / shift evaluation and the OOD protocols.

Importing the package registers the protocols in :data:`rulab.registry.PROTOCOLS`.
"""

from rulab.eval import protocols  # noqa: F401  (registers PROTOCOLS)
