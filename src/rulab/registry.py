"""One small registry class, used for every kind of pluggable thing in rulab.

A registry maps a name to a factory (a class or a function). Registration is a decorator, lookup is
``create(name, **kwargs)``; an unknown name raises :class:`UnknownNameError` that lists the valid
choices. There is deliberately no other name→object mechanism in the library (no dicts, no if-ladders).

Where rulab's own entries come from: a registry names the modules (``modules``) or whole packages (``packages``: the
package and every submodule whose name does not start with ``_``, found with :mod:`pkgutil`) that register them, and
imports them on the first lookup. A new detector, data set or metric is therefore a new module in its package; no
list elsewhere names it.

Example:
    >>> from rulab.registry import MODELS
    >>> @MODELS.register("tiny")
    ... def tiny(num_classes: int = 10): ...
    >>> model = MODELS.create("tiny", num_classes=3)
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = [
    "Registry",
    "UnknownNameError",
    "MODELS",
    "DATASETS",
    "OOD_SETS",
    "CORRUPTIONS",
    "DETECTORS",
    "METHODS",
    "PRESETS",
    "STUDIES",
    "AUGMENTATIONS",
    "PROTOCOLS",
    "BENCHMARKS",
    "METRICS",
    "PAPER_TABLES",
]


class UnknownNameError(KeyError, ValueError):
    """Raised when a name is not registered. Its message names the registry and the valid choices."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain sentence
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A named collection of factories.

    Args:
        kind: what the registry holds, used in error messages ("model", "detector", ...).
    """

    def __init__(self, kind: str, modules: tuple[str, ...] = (), packages: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}
        self._modules = modules
        self._packages = packages
        self._loaded = not modules and not packages

    def builtin_modules(self) -> list[str]:
        """The modules that register rulab's own entries: ``modules``, then each of ``packages`` and its public
        submodules (names not starting with ``_``) in alphabetical order."""
        names = list(self._modules)
        for package in self._packages:
            pkg = importlib.import_module(package)
            names.append(package)
            found = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))
            names += [f"{package}.{name}" for name in found if not name.startswith("_")]
        return names

    def _load_builtins(self) -> None:
        """Import the modules that register rulab's own entries (:meth:`builtin_modules`), once, on the first lookup.

        Registration happens at import time (as in timm); doing it lazily keeps ``import rulab`` cheap and
        keeps the import graph one-directional (the registry never imports its users at module level). A lookup
        made while those modules are being imported (a module that reads the registry at import time, such as
        :mod:`rulab.detectors.functional`) imports the rest first, so it sees every entry but those of the modules
        still being imported.
        """
        if self._loaded:
            return
        for module in self.builtin_modules():
            importlib.import_module(module)
        self._loaded = True

    def register(
        self, name: str | None = None, *, overwrite: bool = False
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a class or function under ``name`` (default: its ``__name__``).

        Registering a second object under a taken name is an error unless ``overwrite=True`` (useful
        in notebooks and tests). The decorated object is returned unchanged, with ``registry_name`` set.
        """

        def decorator(obj: Callable[..., T]) -> Callable[..., T]:
            key = name or obj.__name__
            if key in self._entries and not overwrite and self._entries[key] is not obj:
                raise ValueError(
                    f"a {self.kind} named '{key}' is already registered; pick another name or pass overwrite=True"
                )
            self._entries[key] = obj
            try:
                obj.registry_name = key  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        """Return the registered factory for ``name`` or raise :class:`UnknownNameError`."""
        self._load_builtins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """One sentence naming the unknown ``name``, the closest match and all valid choices."""
        close = difflib.get_close_matches(str(name), self._entries, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown {self.kind} '{name}'{hint}; valid choices: {', '.join(self.list()) or '(none registered)'}"

    def create(self, name: str, **kwargs: Any) -> T:
        """Call the factory registered under ``name`` with ``kwargs``.

        Keyword arguments the factory does not accept raise a ``TypeError`` naming them and the valid ones.
        """
        factory = self.get(name)
        bad = self.unknown_kwargs(name, kwargs)
        if bad:
            valid = ", ".join(self.parameters(name)) or "(none)"
            raise TypeError(
                f"{self.kind} '{name}' has no parameter {', '.join(repr(b) for b in bad)}; valid parameters: {valid}"
            )
        return factory(**kwargs)

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword parameters the factory of ``name`` accepts (for a class: its ``__init__``)."""
        factory = self.get(name)
        sig = inspect.signature(factory)
        return {k: p for k, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def unknown_kwargs(self, name: str, kwargs: dict[str, Any]) -> list[str]:
        """Names in ``kwargs`` that the factory of ``name`` does not accept (none if it takes ``**kwargs``)."""
        sig = inspect.signature(self.get(name))
        if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return []
        params = self.parameters(name)
        return [k for k in kwargs if k not in params]

    def entries(self) -> dict[str, Callable[..., T]]:
        """A copy of ``{name: entry}`` in registration order (``list`` sorts the names; this keeps the order in which
        they were declared, for catalogues whose order is meaningful)."""
        self._load_builtins()
        return dict(self._entries)

    def list(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a substring ``pattern``."""
        self._load_builtins()
        names = sorted(self._entries)
        return [n for n in names if pattern is None or pattern in n]

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._load_builtins()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


MODELS: Registry[Any] = Registry("model", packages=("rulab.models",))
DATASETS: Registry[Any] = Registry("dataset", packages=("rulab.data",))
OOD_SETS: Registry[Any] = Registry("OOD set", packages=("rulab.data", "rulab.data.ood"))
CORRUPTIONS: Registry[Any] = Registry("corruption", ("rulab.data.corruptions",))
DETECTORS: Registry[Any] = Registry("detector", packages=("rulab.detectors",))
METHODS: Registry[Any] = Registry("method", packages=("rulab.methods",))
PRESETS: Registry[Any] = Registry("preset", ("rulab.presets",))
STUDIES: Registry[Any] = Registry("study", ("rulab.presets",))
AUGMENTATIONS: Registry[Any] = Registry("augmentation", packages=("rulab.data",))
PROTOCOLS: Registry[Any] = Registry("protocol", ("rulab.eval.protocols",))
BENCHMARKS: Registry[Any] = Registry("benchmark", ("rulab.eval.benchmarks",))
METRICS: Registry[Any] = Registry("metric", packages=("rulab.metrics",))
"""Every stored metric's :class:`rulab.metrics.catalog.Metric` (name, label, caption, percent, direction), by name."""
PAPER_TABLES: Registry[Any] = Registry("paper table", packages=("rulab.reports.papers",))
"""Paper-table builders by layout name (``hendrycks2019``, ``coursework``, ``hein2019``, ``odin``)."""
