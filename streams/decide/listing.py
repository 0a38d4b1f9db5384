"""What the allocator knows of a user from ``candidates``: the batch, the user, the cap, the ids.

The allocator reads every ``candidates`` record (``AvroSerde.decode_listing``: the ids without the
features) so it knows which users a batch has before any of them is scored, and what each one
could be sent when its scores never arrive (``streams.decide.fallback``). The checks are those of
``streams.records.CandidatesRecord`` on the fields read here; the features are the scorer's to
check (a record it dead-letters for its features still lists its user here, who is then decided
by the fallback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.errors import ValidationError
from streams.records import MAX_CANDIDATES, ScoresRecord, at_least, check_id, check_ids


@dataclass(frozen=True)
class CandidateListing:
    """One user's candidates of one batch, without features.

    Attributes:
        item_ids, provider_ids: ``(n,)`` ids of the user's candidates (n >= 1, items distinct).
        user_cap: most items this user may receive; None: the batch's default.
    """

    batch_id: str
    user_id: str
    user_cap: int | None
    item_ids: tuple[str, ...]
    provider_ids: tuple[str, ...]

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> CandidateListing:
        """From ``AvroSerde.decode_listing``'s value.

        Raises:
            ValidationError: no candidates or more than ``MAX_CANDIDATES``; an id empty or too
                long; two candidates of one item; a negative cap or creation time.
        """
        items = check_ids("item_id", value["item_ids"])
        if not items:
            raise ValidationError(f"user {value['user_id']} in batch {value['batch_id']} has no candidates")
        if len(items) > MAX_CANDIDATES:
            raise ValidationError(f"{len(items)} candidates exceed the limit of {MAX_CANDIDATES}")
        if len(set(items)) != len(items):
            raise ValidationError("duplicate item_id among the candidates")
        providers = check_ids("provider_id", value["provider_ids"])
        if len(providers) != len(items):
            raise ValidationError(f"{len(items)} candidates but {len(providers)} provider ids")
        cap = value.get("user_cap")
        if cap is not None and cap < 0:
            raise ValidationError(f"user_cap {cap} is negative")
        at_least("created_at_ms", value["created_at_ms"])
        return cls(
            check_id("batch_id", value["batch_id"]), check_id("user_id", value["user_id"]), cap, items, providers
        )

    @classmethod
    def of_scores(cls, scores: ScoresRecord) -> CandidateListing:
        """The listing a scores record implies (its items, providers and cap)."""
        return cls(scores.batch_id, scores.user_id, scores.user_cap, scores.item_ids, scores.provider_ids)
