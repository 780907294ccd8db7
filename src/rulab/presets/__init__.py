"""Named run configurations (``PRESETS``) and studies (``STUDIES``); importing this package registers them.

CPU scale: :mod:`~rulab.presets.fmnist`, :mod:`~rulab.presets.studies`. Paper scale (the four reproduced works (W1-W4), each with a
CPU-scale counterpart study): :mod:`~rulab.presets.hendrycks2019` (W1), :mod:`~rulab.presets.coursework` (W2),
:mod:`~rulab.presets.hein2019` (W3), :mod:`~rulab.presets.odin` (W4).
"""

from rulab.presets import coursework, fmnist, hein2019, hendrycks2019, odin, studies  # noqa: F401
from rulab.presets.load import load_config, preset_config

__all__ = ["load_config", "preset_config"]
