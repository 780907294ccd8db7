"""Fixtures shared by test modules in more than one folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a whole module (``pytestmark = pytest.mark.usefixtures("one_thread")``).

    For modules whose tensors are small (a few 28×28 images, batches of 16, the toy's 4000×100 matrices): one
    thread is faster there, and immune to a busy machine's oversubscription.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
