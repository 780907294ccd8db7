"""Where the data comes from (see :mod:`rulab.data.fetch.locate`)."""

from rulab.data.fetch.locate import *  # noqa: F403
from rulab.data.fetch.locate import __all__  # noqa: F401
