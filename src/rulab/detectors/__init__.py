"""OOD detectors (confidence scores, higher = more in-distribution) and logit post-processors."""
