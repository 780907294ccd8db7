"""Named run configurations (``PRESETS``) and studies (``STUDIES``); importing this package registers them."""

from rulab.presets import fmnist, studies  # noqa: F401
