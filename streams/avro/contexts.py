"""Columnar Avro encoding of one batch's ``decision-contexts`` records (written beside its decisions).

A context record holds every candidate of a decision with its features, propensity, x and three
calibrated means: with fastavro ~60 µs per user of 20 candidates, on the allocator's path from
CLOSED to the decisions. As for ``streams.avro.decisions``, the candidates of every user of the
batch are written at once with numpy (each distinct id encoded once, the numbers as their bytes);
only each record's own strings and scalars are joined in Python.

The bytes are fastavro's: the encoder is bound to the structure of ``schemas/decision-contexts.avsc``
(``IMPLEMENTED``). It leaves a batch to fastavro (``AvroSerde.encode_contexts`` then encodes
:meth:`ContextColumns.rows`) when the current schema differs, when users' feature widths differ,
when a mean is missing (NaN, written as null), or a value has an unexpected type.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastavro import parse_schema

# Same package, same wire format: the row builders of the decisions encoder and the scalar writers.
from streams.avro.decisions import _concat_rows, _doubles, _present_doubles
from streams.avro.wire import END, F4, INT_RANGE, Unhandled, checked_long, signature, write_long, write_string

_NULLABLE_DOUBLE = ["null", "double"]
# schemas/decision-contexts.avsc without its docs: the structure this module writes.
IMPLEMENTED: dict[str, Any] = {
    "type": "record",
    "name": "DecisionContext",
    "namespace": "banditlp",
    "fields": [
        {"name": "decision_id", "type": "string"},
        {"name": "batch_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "policy", "type": "string", "default": "banditlp"},
        {"name": "n_draws", "type": "int", "default": 1},
        {"name": "model_name", "type": "string"},
        {"name": "model_version", "type": "long"},
        {"name": "parameter_version", "type": "string", "default": "default"},
        {"name": "tau", "type": _NULLABLE_DOUBLE, "default": None},
        {"name": "user_cap", "type": "int"},
        {"name": "rounding", "type": "string", "default": "sample"},
        {"name": "decided_at_ms", "type": "long"},
        {
            "name": "candidates",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "ContextCandidate",
                    "fields": [
                        {"name": "item_id", "type": "string"},
                        {"name": "provider_id", "type": "string"},
                        {"name": "features", "type": {"type": "array", "items": "float"}, "default": []},
                        {"name": "propensity", "type": "double"},
                        {"name": "x", "type": "double"},
                        {"name": "mean_conversion", "type": _NULLABLE_DOUBLE, "default": None},
                        {"name": "mean_unsubscription", "type": _NULLABLE_DOUBLE, "default": None},
                        {"name": "mean_value", "type": _NULLABLE_DOUBLE, "default": None},
                    ],
                },
            },
        },
    ],
}
_SIGNATURE = signature(parse_schema(IMPLEMENTED))
#: The candidates' three means, in schema order.
MEANS: tuple[str, ...] = ("mean_conversion", "mean_unsubscription", "mean_value")


def implements(parsed_schema: Any) -> bool:
    """True when :func:`encode` writes ``parsed_schema`` (a ``decision-contexts`` schema)."""
    return signature(parsed_schema) == _SIGNATURE


def _optional(value: float) -> float | None:
    return None if value != value else value  # NaN -> null


@dataclass(frozen=True, eq=False)
class ContextColumns:
    """One batch's decision contexts as columns: ``n`` users, ``E`` pairs, each user's pairs contiguous.

    Attributes:
        batch_id: the batch.
        user_ids: ``(n,)`` user ids, in record order.
        starts: ``(n + 1,)`` int64; user ``u``'s pairs are ``starts[u]:starts[u + 1]``.
        item: ``(E,)`` int64 index of each pair's item in ``item_names``.
        item_names: the batch's item ids.
        provider: ``(E,)`` int64 index of each pair's provider in ``provider_names``.
        provider_names: the batch's provider ids.
        features: ``(n,)`` per user a ``(n_u, d_u)`` float32 matrix of its pairs' features
            (``d_u`` may be 0).
        propensity: ``(E,)`` float64 send probability of each pair under the policy.
        x: ``(E,)`` float64 LP value of each pair in the plan that was rounded.
        mean_conversion, mean_unsubscription, mean_value: ``(E,)`` float64 calibrated means;
            NaN where the scores had none (written as null).
        model_names, model_versions, parameter_versions: ``(n,)`` each user's scoring model.
        taus: ``(n,)`` float64 Thompson temperature of each user's scores; NaN: unknown (null).
        user_caps: ``(n,)`` int each user's cap.
        policy, n_draws, rounding, decided_at_ms: as the decisions carry them (``policy``: one
            name for the batch, or ``(n,)`` one per user).
    """

    batch_id: str
    user_ids: Sequence[str]
    starts: np.ndarray
    item: np.ndarray
    item_names: Sequence[str]
    provider: np.ndarray
    provider_names: Sequence[str]
    features: Sequence[np.ndarray]
    propensity: np.ndarray
    x: np.ndarray
    mean_conversion: np.ndarray
    mean_unsubscription: np.ndarray
    mean_value: np.ndarray
    model_names: Sequence[str]
    model_versions: Sequence[int]
    parameter_versions: Sequence[str]
    taus: np.ndarray
    user_caps: Sequence[int]
    policy: str | Sequence[str]
    n_draws: int
    rounding: str
    decided_at_ms: int

    def rows(self) -> Iterator[dict[str, Any]]:
        """The ``decision-contexts`` values as plain dicts, one per user (what fastavro encodes)."""
        bounds = self.starts.tolist()
        item, provider = self.item.tolist(), self.provider.tolist()
        propensity, x = self.propensity.tolist(), self.x.tolist()
        means = [getattr(self, name).tolist() for name in MEANS]
        for u, user in enumerate(self.user_ids):
            s, e = bounds[u], bounds[u + 1]
            feats = np.asarray(self.features[u], dtype=np.float32).tolist()  # (n_u, d_u)
            yield {
                "decision_id": f"{self.batch_id}/{user}",
                "batch_id": self.batch_id,
                "user_id": user,
                "policy": self.policy if isinstance(self.policy, str) else self.policy[u],
                "n_draws": self.n_draws,
                "model_name": self.model_names[u],
                "model_version": self.model_versions[u],
                "parameter_version": self.parameter_versions[u],
                "tau": _optional(float(self.taus[u])),
                "user_cap": self.user_caps[u],
                "rounding": self.rounding,
                "decided_at_ms": self.decided_at_ms,
                "candidates": [
                    {
                        "item_id": self.item_names[item[j]],
                        "provider_id": self.provider_names[provider[j]],
                        "features": feats[j - s],
                        "propensity": propensity[j],
                        "x": x[j],
                        **{name: _optional(column[j]) for name, column in zip(MEANS, means)},
                    }
                    for j in range(s, e)
                ],
            }


def encode(columns: ContextColumns, prefix: bytes = b"") -> list[bytes] | None:
    """Each user's ``decision-contexts`` record, Avro-encoded after ``prefix`` (the wire-format
    header), or None to leave the batch to fastavro (module docstring)."""
    try:
        return _encode(columns, prefix)
    except (Unhandled, TypeError, AttributeError, ValueError, struct.error, OverflowError):
        return None


def _feature_block(features: Sequence[np.ndarray], n_pairs: int) -> np.ndarray:
    """``(E, w)`` uint8: each pair's ``features`` array encoded, when every user has one width."""
    widths = {int(np.shape(f)[1]) if np.ndim(f) == 2 else -1 for f in features}
    if len(widths) > 1 or -1 in widths:
        raise Unhandled
    d = widths.pop() if widths else 0
    if d == 0:
        return np.zeros((n_pairs, 1), dtype=np.uint8)  # END: an empty array
    values = np.concatenate([np.asarray(f) for f in features]) if features else np.zeros((0, d))
    if values.dtype.kind != "f" or values.shape != (n_pairs, d):
        raise Unhandled
    count = np.frombuffer(write_long(d), dtype=np.uint8)
    body = np.ascontiguousarray(values, dtype=F4).view(np.uint8).reshape(n_pairs, 4 * d)
    out = np.empty((n_pairs, count.size + 4 * d + 1), dtype=np.uint8)
    out[:, : count.size] = count
    out[:, count.size : -1] = body
    out[:, -1] = 0
    return out


def _encode(c: ContextColumns, prefix: bytes) -> list[bytes]:
    starts = np.asarray(c.starts, dtype=np.int64)
    n_pairs = int(starts[-1]) if starts.size else 0
    means = [np.asarray(getattr(c, name)) for name in MEANS]
    if any(m.dtype.kind != "f" or np.isnan(m).any() for m in means):
        raise Unhandled  # a null mean: fastavro writes the union's null branch
    items = [write_string(s) for s in c.item_names]
    providers = [write_string(s) for s in c.provider_names]
    rows, rows_at = _concat_rows(
        [
            (items, c.item),
            (providers, c.provider),
            _feature_block(c.features, n_pairs),
            _doubles(c.propensity),
            _doubles(c.x),
            *(_present_doubles(m) for m in means),
        ]
    )
    pair_at = rows_at[starts].tolist()  # (n + 1,) user u's entries: pair_at[u]:pair_at[u + 1]
    n_of = np.diff(starts).tolist()
    batch = write_string(c.batch_id)
    draws = checked_long(c.n_draws, INT_RANGE)
    policies = {name: write_string(name) for name in ([c.policy] if isinstance(c.policy, str) else set(c.policy))}
    suffix = write_string(c.rounding) + checked_long(c.decided_at_ms)
    taus = np.asarray(c.taus)
    if taus.dtype.kind != "f":
        raise Unhandled
    tau_bytes = [b"\x00" if t != t else b"\x02" + struct.pack("<d", t) for t in taus.tolist()]
    model_parts: dict[tuple[Any, Any, Any], bytes] = {}  # one encoding per model snapshot
    out = []
    for u, user in enumerate(c.user_ids):
        model = (c.model_names[u], c.model_versions[u], c.parameter_versions[u])
        part = model_parts.get(model)
        if part is None:
            part = model_parts[model] = write_string(model[0]) + checked_long(model[1]) + write_string(model[2])
        m = n_of[u]
        out.append(
            b"".join(
                (
                    prefix,
                    write_string(f"{c.batch_id}/{user}"),
                    batch,
                    write_string(user),
                    policies[c.policy if isinstance(c.policy, str) else c.policy[u]],
                    draws,
                    part,
                    tau_bytes[u],
                    checked_long(c.user_caps[u], INT_RANGE),
                    suffix,
                    write_long(m) + rows[pair_at[u] : pair_at[u + 1]] + END if m else END,
                )
            )
        )
    return out
