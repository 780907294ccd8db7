"""What every model entrypoint shares: normalisation defaults, the default input shape, parameter counting.

Each registered entrypoint (``@MODELS.register("wrn40_2")``) takes keyword arguments only, among them
``mean`` / ``std`` where ``None`` means "the model's documented default for this channel count"
(:func:`resolve_stats`), and carries a ``default_input_shape`` attribute (set with :func:`input_shape`) that
tells tests, benchmarks and the command line what a single input of that model looks like.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from torch import nn

from rulab.errors import ConfigError
from rulab.registry import MODELS

__all__ = ["resolve_stats", "input_shape", "default_input_shape", "count_parameters"]

F = TypeVar("F", bound=Callable[..., nn.Module])

# Reference statistics in [0, 1] pixel units (tuples of data, not a registry).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
# ODIN's (and OE's) CIFAR statistics (ODIN ``code/calData.py``): (125.3, 123.0, 113.9)/255 and (63.0, 62.1, 66.7)/255.
ODIN_CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
ODIN_CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


def _fit_channels(values: Sequence[float], in_channels: int, what: str, model: str) -> list[float]:
    vals = [float(v) for v in values]
    if len(vals) == in_channels:
        return vals
    if len(vals) == 1:
        return vals * in_channels
    raise ConfigError(
        f"model '{model}' got {what} with {len(vals)} values for {in_channels} input channel(s); "
        f"give one value or {in_channels} values"
    )


def resolve_stats(
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    in_channels: int,
    default_mean: Sequence[float],
    default_std: Sequence[float],
    model: str,
) -> tuple[list[float], list[float]]:
    """Per-channel ``(mean, std)`` for a :class:`~rulab.models.base.Normalize` first layer.

    ``None`` picks the model's default. A default given for 3 channels is averaged over the channels when the
    model is built for grey input (``in_channels=1``) and a one-value default is broadcast to every channel.
    A user value must have one entry or ``in_channels`` entries; every ``std`` must be positive.

    Args:
        mean: user mean in [0, 1] pixel units, or ``None``.
        std: user standard deviation, or ``None``.
        in_channels: number of image channels C (or input features D for the MLP).
        default_mean: the model's documented default mean.
        default_std: the model's documented default standard deviation.
        model: registry name, used in error messages.

    Returns:
        ``(mean, std)`` as lists of length ``in_channels``.
    """
    if in_channels < 1:
        raise ConfigError(f"model '{model}' needs in_channels >= 1, got {in_channels}")

    def default(values: Sequence[float]) -> list[float]:
        vals = [float(v) for v in values]
        if len(vals) != in_channels and len(vals) > 1:
            vals = [sum(vals) / len(vals)]
        return _fit_channels(vals, in_channels, "a default", model)

    m = default(default_mean) if mean is None else _fit_channels(mean, in_channels, "mean", model)
    s = default(default_std) if std is None else _fit_channels(std, in_channels, "std", model)
    if any(v <= 0 for v in s):
        raise ConfigError(f"model '{model}' needs every std value > 0, got {s}")
    return m, s


def input_shape(*shape: int) -> Callable[[F], F]:
    """Decorator that records the shape of one default input (``(C, H, W)``, or ``(D,)`` for vectors).

    Put it *below* ``@MODELS.register(...)`` so the registered object carries the attribute::

        @MODELS.register("lenet")
        @input_shape(1, 28, 28)
        def lenet(...): ...
    """

    def decorator(fn: F) -> F:
        fn.default_input_shape = tuple(int(s) for s in shape)  # type: ignore[attr-defined]
        return fn

    return decorator


def default_input_shape(model: str | Callable[..., nn.Module]) -> tuple[int, ...]:
    """The ``(C, H, W)`` (or ``(D,)``) a model entrypoint declared with :func:`input_shape`; ``(3, 32, 32)`` if none.

    Args:
        model: a registered model name or the entrypoint itself.
    """
    entrypoint = MODELS.get(model) if isinstance(model, str) else model
    return tuple(getattr(entrypoint, "default_input_shape", (3, 32, 32)))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BN running statistics and Normalize's mean/std excluded).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad=True``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
