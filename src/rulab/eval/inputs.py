"""The checks an evaluation runs on its model and data before any work: one clear sentence instead of a traceback
from deep inside a forward pass, a detector or a metric.

:func:`rulab.eval.evaluate.run_evaluation` (every evaluation: ``rulab eval``, studies, ``rulab.evaluate``) calls
:func:`check_evaluation` first. It checks

* the **data**: the ID test set holds images ``[N, C, H, W]`` (N ≥ 1); a validation or training split, when given,
  has the test set's image shape (a training split may be empty: no detector fits on it);
* the **model**: an ``nn.Module`` whose floating-point parameters are ``float32`` (rulab computes in float32; a
  float64 or half-precision model would fail at the first convolution), and whose output on one test image is a
  logits tensor ``[1, K]`` with K ≥ 2. A model returning a tuple, a list or a dict (auxiliary outputs, Hugging Face
  style) is refused with a sentence that says how to wrap it: taking its first element silently could score the
  wrong tensor (some models return ``(features, logits)``).

Names, paths and numbers are checked lower down (:mod:`rulab.checks`), stored database rows where they are read
(:mod:`rulab.results.rows`).
"""

from __future__ import annotations

import torch
from torch import nn

from rulab.checks import brief
from rulab.data.tensors import TensorDataset
from rulab.errors import InputError
from rulab.eval.predict import check_images, model_device

__all__ = ["check_evaluation", "check_model", "check_split"]


def check_split(
    ds: TensorDataset | None, what: str, shape: tuple[int, ...] | None = None, empty_ok: bool = False
) -> None:
    """Raise :class:`InputError` unless ``ds`` holds images ``[N, C, H, W]`` (of ``shape`` = (C, H, W) when given)
    with one label each; ``N = 0`` only with ``empty_ok``. ``None`` passes."""
    if ds is None:
        return
    x = getattr(ds, "x", None)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise InputError(
            f"the {what} '{getattr(ds, 'name', '?')}' must hold images [N, C, H, W], got {brief(x)}; "
            "convert it with rulab.data.user.as_dataset"
        )
    if len(x) == 0 and not empty_ok:
        raise InputError(f"the {what} '{ds.name}' holds no images; give at least one")
    if len(ds.y) != len(x):
        raise InputError(f"the {what} '{ds.name}' has {len(x)} images but {len(ds.y)} labels; give one label per image")
    if shape is not None and len(x) and tuple(x.shape[1:]) != tuple(shape):
        raise InputError(
            f"the {what} '{ds.name}' has images of shape {tuple(x.shape[1:])}, the test images {tuple(shape)}; use one shape"
        )


def check_model(model: nn.Module, sample: torch.Tensor) -> None:
    """Raise :class:`InputError` unless ``model`` is a float32 ``nn.Module`` mapping ``sample`` (uint8 or [0, 1]
    float images ``[1, C, H, W]``) to logits ``[1, K]`` with K ≥ 2. Runs one forward pass in eval mode, no grad."""
    if not isinstance(model, nn.Module):
        raise InputError(f"the model must be a torch.nn.Module mapping images to logits, got {type(model).__name__}")
    dtypes = sorted(
        {
            str(p.dtype).replace("torch.", "")
            for p in model.parameters()
            if p.is_floating_point() and p.dtype != torch.float32
        }
    )
    if dtypes:
        raise InputError(
            f"the model's parameters are {', '.join(dtypes)}, but rulab evaluates in float32; "
            "pass a float32 copy (copy.deepcopy(model).float())"
        )
    check_images(model, sample)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            xb = sample.to(model_device(model))
            xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()
            out = model(xb)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:  # the user's network refuses the user's images
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputError(
            f"the model fails on one test image of shape {tuple(sample.shape[1:])} ({type(err).__name__}: {first[:150]}); "
            "give images of the shape and channel count the model was built for"
        ) from None
    finally:
        model.train(was_training)
    if isinstance(out, (tuple, list)):
        raise InputError(
            f"the model returns a {type(out).__name__} of {len(out)} items, not a logits tensor [B, K]; wrap it so that forward "
            "returns only the logits (e.g. a module whose forward is `return net(x)[0]` if the logits come first)"
        )
    if isinstance(out, dict):
        raise InputError(
            f"the model returns a dict (keys {brief(list(out)[:5])}), not a logits tensor [B, K]; wrap it so that forward "
            "returns only the logits (e.g. `return net(x)['logits']`)"
        )
    if not isinstance(out, torch.Tensor):
        raise InputError(
            f"the model returns {type(out).__name__}, not a logits tensor [B, K]; wrap it so that forward returns the logits"
        )
    if out.ndim != 2 or out.shape[0] != 1:
        raise InputError(
            f"the model maps one image to an output of shape {tuple(out.shape)}, not logits [1, K]; "
            "make forward return one row of class scores per image"
        )
    if out.shape[1] < 2:
        raise InputError(
            f"the model returns {out.shape[1]} logit(s) per image; a classifier needs at least two classes "
            "(for a binary task return two logits)"
        )


def check_evaluation(
    model: nn.Module, test: TensorDataset, val: TensorDataset | None, train: TensorDataset | None
) -> None:
    """The checks of the module docstring, in order: the test set, the other splits, then the model on one test
    image.

    Raises:
        InputError: naming the split or the model and what to change.
    """
    check_split(test, "ID test set")
    shape = tuple(test.x.shape[1:])
    check_split(val, "validation split", shape)
    check_split(train, "training split", shape, empty_ok=True)
    check_model(model, test.x[:1])
