"""Columnar Avro encoding of one batch's ``decisions`` records (the allocator's output).

fastavro handles each ``x`` and each id of a decision as a Python object: ~40 µs per decision
of 20 candidates, 0.4 s for a batch of 10,000 users, all of it on the allocator's path from
CLOSED to the decisions. Here the ``chosen`` and ``allocation`` arrays of every user of the
batch are written at once with numpy (each distinct id encoded once, the doubles as their
bytes); only each record's own strings (decision id, user id, model) are joined in Python.

The bytes are fastavro's: the encoder is bound to the structure of ``schemas/decisions.avsc``
(``IMPLEMENTED``); when the current schema differs, or a value has an unexpected type,
``AvroSerde.encode_decisions`` has fastavro encode :meth:`DecisionColumns.rows` instead.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastavro import parse_schema

# Same package, same wire format: the scalar writers and schema signature of the scores codecs.
from streams.avro.wire import END, F8, INT_RANGE, Unhandled, checked_long, signature, write_long, write_string

# schemas/decisions.avsc without its docs: the structure this module writes.
IMPLEMENTED: dict[str, Any] = {
    "type": "record",
    "name": "Decision",
    "namespace": "banditlp",
    "fields": [
        {"name": "decision_id", "type": "string"},
        {"name": "batch_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {
            "name": "chosen",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "ChosenItem",
                    "fields": [
                        {"name": "item_id", "type": "string"},
                        {"name": "provider_id", "type": "string"},
                        {"name": "propensity", "type": "double"},
                    ],
                },
            },
        },
        {
            "name": "allocation",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "ItemShare",
                    "fields": [
                        {"name": "item_id", "type": "string"},
                        {"name": "x", "type": "double"},
                        {"name": "propensity", "type": ["null", "double"], "default": None},
                    ],
                },
            },
        },
        {"name": "model_name", "type": "string"},
        {"name": "model_version", "type": "long"},
        {"name": "parameter_version", "type": "string", "default": "default"},
        {"name": "solver", "type": "string"},
        {"name": "rounding", "type": "string", "default": "sample"},
        {"name": "decided_at_ms", "type": "long"},
        {"name": "n_draws", "type": "int", "default": 1},
        {"name": "policy", "type": "string", "default": "banditlp"},
    ],
}
_SIGNATURE = signature(parse_schema(IMPLEMENTED))


def implements(parsed_schema: Any) -> bool:
    """True when :func:`encode` writes ``parsed_schema`` (a ``decisions`` schema)."""
    return signature(parsed_schema) == _SIGNATURE


@dataclass(frozen=True, eq=False)
class DecisionColumns:
    """One batch's decisions as columns: ``n`` users, ``E`` pairs, each user's pairs contiguous.

    Attributes:
        batch_id: the batch.
        user_ids: ``(n,)`` user ids, in record order.
        starts: ``(n + 1,)`` int64; user ``u``'s pairs are ``starts[u]:starts[u + 1]``.
        item: ``(E,)`` int64 index of each pair's item in ``item_names``.
        item_names: the batch's item ids.
        provider: ``(E,)`` int64 index of each pair's provider in ``provider_names``.
        provider_names: the batch's provider ids.
        x: ``(E,)`` float64 LP values of the plan that was rounded.
        chosen: ``(E,)`` bool, the pairs sent.
        propensity: ``(E,)`` float64, every pair's send probability under the policy (the
            mean over the ``n_draws`` plans), logged on every candidate and on the chosen ones.
        model_names, model_versions, parameter_versions: ``(n,)`` each user's scoring model.
        solver, rounding: as the ``decisions`` schema describes them.
        decided_at_ms: wall-clock ms since the Unix epoch.
        n_draws: K, the plans the propensities mix.
        policy: the decision policy's name, one for the batch or ``(n,)`` one per user (the
            policy whose scores the user's LP rows used).
    """

    batch_id: str
    user_ids: Sequence[str]
    starts: np.ndarray
    item: np.ndarray
    item_names: Sequence[str]
    provider: np.ndarray
    provider_names: Sequence[str]
    x: np.ndarray
    chosen: np.ndarray
    propensity: np.ndarray
    model_names: Sequence[str]
    model_versions: Sequence[int]
    parameter_versions: Sequence[str]
    solver: str
    rounding: str
    decided_at_ms: int
    n_draws: int = 1
    policy: str | Sequence[str] = "banditlp"

    def policy_of(self, u: int) -> str:
        """The policy name of user ``u``'s decision."""
        return self.policy if isinstance(self.policy, str) else self.policy[u]

    def rows(self) -> Iterator[dict[str, Any]]:
        """The ``decisions`` values as plain dicts, one per user (what fastavro encodes)."""
        bounds = self.starts.tolist()
        item, provider = self.item.tolist(), self.provider.tolist()
        x, propensity = self.x.tolist(), self.propensity.tolist()
        for u, user in enumerate(self.user_ids):
            s, e = bounds[u], bounds[u + 1]
            yield {
                "decision_id": f"{self.batch_id}/{user}",
                "batch_id": self.batch_id,
                "user_id": user,
                "chosen": [
                    {
                        "item_id": self.item_names[item[j]],
                        "provider_id": self.provider_names[provider[j]],
                        "propensity": propensity[j],
                    }
                    for j in (s + np.flatnonzero(self.chosen[s:e])).tolist()
                ],
                "allocation": [
                    {"item_id": self.item_names[item[j]], "x": x[j], "propensity": propensity[j]} for j in range(s, e)
                ],
                "model_name": self.model_names[u],
                "model_version": self.model_versions[u],
                "parameter_version": self.parameter_versions[u],
                "solver": self.solver,
                "rounding": self.rounding,
                "decided_at_ms": self.decided_at_ms,
                "n_draws": self.n_draws,
                "policy": self.policy_of(u),
            }


def encode(columns: DecisionColumns, prefix: bytes = b"") -> list[bytes] | None:
    """Each user's ``decisions`` record, Avro-encoded after ``prefix`` (the wire-format
    header), or None to leave the batch to fastavro (a value of an unexpected type)."""
    try:
        return _encode(columns, prefix)
    except (Unhandled, TypeError, AttributeError, struct.error, OverflowError):
        return None


def _encode(c: DecisionColumns, prefix: bytes) -> list[bytes]:
    starts = np.asarray(c.starts, dtype=np.int64)
    items = [write_string(s) for s in c.item_names]
    providers = [write_string(s) for s in c.provider_names]
    picked = np.flatnonzero(c.chosen)
    # The entries of every user's two arrays, back to back; *_at[j]: where entry j starts.
    allocation, allocation_at = _concat_rows([(items, c.item), _doubles(c.x), _present_doubles(c.propensity)])
    chosen, chosen_at = _concat_rows(
        [(items, c.item[picked]), (providers, c.provider[picked]), _doubles(c.propensity[picked])]
    )
    pair_at = allocation_at[starts].tolist()  # (n + 1,) user u's entries: pair_at[u]:pair_at[u + 1]
    first = np.searchsorted(picked, starts)  # (n + 1,) user u's chosen pairs: first[u]:first[u + 1]
    chosen_byte = chosen_at[first].tolist()
    n_pairs, n_chosen = np.diff(starts).tolist(), np.diff(first).tolist()
    batch = write_string(c.batch_id)
    suffix = (
        write_string(c.solver)
        + write_string(c.rounding)
        + checked_long(c.decided_at_ms)
        + checked_long(c.n_draws, INT_RANGE)
    )
    model_parts: dict[tuple[Any, Any, Any, str], bytes] = {}  # one encoding per model snapshot and policy
    out = []
    for u, user in enumerate(c.user_ids):
        model = (c.model_names[u], c.model_versions[u], c.parameter_versions[u], c.policy_of(u))
        tail = model_parts.get(model)
        if tail is None:
            tail = model_parts[model] = (
                write_string(model[0])
                + checked_long(model[1])
                + write_string(model[2])
                + suffix
                + write_string(model[3])
            )
        k, m = n_chosen[u], n_pairs[u]
        out.append(
            b"".join(
                (
                    prefix,
                    write_string(f"{c.batch_id}/{user}"),
                    batch,
                    write_string(user),
                    write_long(k) + chosen[chosen_byte[u] : chosen_byte[u + 1]] + END if k else END,
                    write_long(m) + allocation[pair_at[u] : pair_at[u + 1]] + END if m else END,
                    tail,
                )
            )
        )
    return out


def _doubles(values: np.ndarray) -> np.ndarray:
    """``(m, 8)`` uint8: each value as an Avro ``double`` (little-endian IEEE 754)."""
    v = np.asarray(values)
    if v.dtype.kind != "f":
        raise Unhandled
    return np.ascontiguousarray(v, dtype=F8).view(np.uint8).reshape(-1, 8)


def _present_doubles(values: np.ndarray) -> np.ndarray:
    """``(m, 9)`` uint8: each value as the ``["null", "double"]`` union's double branch."""
    d = _doubles(values)
    out = np.empty((d.shape[0], 9), dtype=np.uint8)
    out[:, 0] = 2  # branch 1, zigzag-encoded
    out[:, 1:] = d
    return out


def _concat_rows(columns: list[np.ndarray | tuple[list[bytes], np.ndarray]]) -> tuple[bytes, np.ndarray]:
    """``m`` rows, each the concatenation of its entry in every column, written back to back.

    A column is ``(m, w)`` uint8 (fixed width) or ``(table, index (m,))``: row ``j`` holds
    ``table[index[j]]`` (variable width). Returns ``(bytes, at (m + 1,) int64)``: row ``j``
    is ``bytes[at[j]:at[j + 1]]``.
    """
    lengths = []
    for col in columns:
        if isinstance(col, np.ndarray):
            lengths.append(np.full(col.shape[0], col.shape[1], dtype=np.int64))
        else:
            table, index = col
            lengths.append(np.fromiter(map(len, table), dtype=np.int64, count=len(table))[index])
    m = lengths[0].shape[0]
    at = np.zeros(m + 1, dtype=np.int64)
    if not m:
        return b"", at
    np.cumsum(np.sum(lengths, axis=0), out=at[1:])
    out = np.empty(int(at[-1]), dtype=np.uint8)
    col_at = at[:-1].copy()  # where each row's entry of the current column starts
    for col, length in zip(columns, lengths):
        if isinstance(col, np.ndarray):
            out[col_at[:, None] + np.arange(col.shape[1])] = col
        else:
            table, index = col
            blob = np.frombuffer(b"".join(table), dtype=np.uint8)
            table_at = np.zeros(len(table), dtype=np.int64)
            np.cumsum(np.fromiter(map(len, table[:-1]), dtype=np.int64, count=len(table) - 1), out=table_at[1:])
            # byte b of entry j: out[col_at[j] + b] = blob[table_at[index[j]] + b]
            within = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
            out[np.repeat(col_at, length) + within] = blob[np.repeat(table_at[index], length) + within]
        col_at += length
    return out.tobytes(), at
