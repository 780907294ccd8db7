"""Training objectives, registered in ``rulab.registry.METHODS`` (importing this package registers them)."""

from rulab.methods import erm  # noqa: F401
from rulab.methods.base import Method

__all__ = ["Method"]
