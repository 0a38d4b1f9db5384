"""One torch thread for these tests: the GPs' matrices are tiny, and on a loaded machine torch's thread
pool makes every marginal-likelihood step about ten times slower than a single thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
