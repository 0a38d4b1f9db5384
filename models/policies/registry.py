"""The policies by name: ``register`` (a class decorator), ``make_policy`` and ``policy_names``.

Discovery: the first lookup imports every module of ``models.policies`` (except this one and
``base``), so a policy in a new module registers itself with no list to edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, TypeVar

from models.errors import ModelInputError
from models.policies.base import Policy
from models.snapshot import register_kind

POLICIES: dict[str, type[Policy]] = {}

_P = TypeVar("_P", bound=type[Policy])
_SKIP = frozenset({"base", "registry"})
_loaded = False


def register(cls: _P) -> _P:
    """Class decorator: add ``cls`` to :data:`POLICIES` under ``cls.name`` and make its snapshots loadable.

    The snapshot kind is ``"policy:<name>"`` unless the class sets its own ``snapshot_kind``.

    Raises:
        ValueError: another class already holds the name.
    """
    name = cls.name
    if name in POLICIES and POLICIES[name] is not cls:
        raise ValueError(f"policy {name!r} registered twice")
    if "snapshot_kind" not in cls.__dict__:
        cls.snapshot_kind = f"policy:{name}"
    register_kind(cls)
    POLICIES[name] = cls
    return cls


def load_all() -> None:
    """Import every policy module of the package once (they register themselves)."""
    global _loaded
    if _loaded:
        return
    import models.policies as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _SKIP and not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded = True


def policy_names() -> tuple[str, ...]:
    """Every registered policy's name, sorted."""
    load_all()
    return tuple(sorted(POLICIES))


def policy_class(name: str) -> type[Policy]:
    """The class registered under ``name``.

    Raises:
        ModelInputError: no policy has that name.
    """
    load_all()
    try:
        return POLICIES[name]
    except KeyError:
        raise ModelInputError(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}") from None


def make_policy(name: str, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> Policy:
    """Construct the policy registered under ``name``.

    Raises:
        ModelInputError: an unknown name, or parameters the policy refuses.
    """
    return policy_class(name)(n_actions, dim, seed=seed, **params)
