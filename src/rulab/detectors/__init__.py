"""OOD detectors (confidence scores, higher = more in-distribution) and logit post-processors.

Importing the package registers every built-in detector in :data:`rulab.registry.DETECTORS`. Their score functions
(``msp_score``, ``energy_score``, ...) are exported here in the form of :mod:`rulab.detectors.functional`: they take
NumPy arrays or torch tensors.

=================  ==========================================  ===============================================
name               score                                       paper
=================  ==========================================  ===============================================
``msp``            max softmax                                 Hendrycks & Gimpel 2017, arXiv:1610.02136
``maxlogit``       max logit                                   Hendrycks et al. 2022, arXiv:1911.11132
``energy``         T·logsumexp(f/T)                            Liu et al. 2020, arXiv:2010.03759
``entropy``        negative predictive entropy                 (baseline)
``odin``           MSP at T after an input step of ε pixels    Liang et al. 2018, arXiv:1706.02690
``mahalanobis``    −min squared Mahalanobis distance           Lee et al. 2018, arXiv:1807.03888
``knn``            −distance to the k-th nearest neighbour     Sun et al. 2022, arXiv:2204.06165
``react``          energy of percentile-clipped features       Sun et al. 2021, arXiv:2111.12797
``gen``            negative generalized entropy                Liu et al., CVPR 2023
``vim``            energy − α·‖residual‖                       Wang et al. 2022, arXiv:2203.10807
``klm``            −min KL to class-mean softmax templates     Hendrycks et al. 2022, arXiv:1911.11132
=================  ==========================================  ===============================================
"""

from rulab.detectors import (  # noqa: F401  (registration)
    energy,
    entropy,
    gen,
    klm,
    knn,
    mahalanobis,
    maxlogit,
    msp,
    odin,
    react,
    vim,
)
from rulab.detectors.base import Detector, Extracted
from rulab.detectors.functional import (  # the score functions, taking NumPy arrays or tensors
    energy_score,
    entropy_score,
    fit_temperature,
    gen_score,
    klm_score,
    knn_score,
    mahalanobis_score,
    maxlogit_score,
    msp_score,
    odin_score,
    odin_score_from_logits,
    react_score,
    vim_score,
)
from rulab.detectors.scaled import TemperatureScaled, create_detector
from rulab.detectors.temperature import TemperatureScaler

__all__ = [
    "Detector", "Extracted", "TemperatureScaled", "TemperatureScaler", "create_detector", "fit_temperature",
    "msp_score", "maxlogit_score", "energy_score", "entropy_score", "gen_score", "odin_score", "odin_score_from_logits",
    "mahalanobis_score", "knn_score", "react_score", "vim_score", "klm_score",
]
