"""The trainer's configuration: one frozen value, built once by the entry point.

Kept apart from ``streams.train.trainer`` so that the command line can build it without
importing torch (a worker that does not train, the allocator, starts faster after a restart).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.pacing import PacingConfig
from models.version_guard import VersionGuardConfig
from streams.kafka.topics import TopicNames


@dataclass(frozen=True)
class TrainerConfig:
    """Settings of the trainer.

    Attributes:
        retrain_every: new rows that trigger a retrain.
        retrain_interval_s: a retrain also happens this long after the last one if new rows came in.
        min_rows: rows needed before the first retrain.
        buffer_rows: rows retained (the newest); the posterior is rebuilt from them.
        pacing: cost pacing of the unsubscription outcome over every row read with a budgeted
            cost (``streams.train.pacing``); on by default, ``prior_events`` = 0 turns it off.
        version_guard: the versions whose costs of the newest rows the version guard compares
            (``models.version_guard``); its factor multiplies the published cost scale, and
            ``versions`` = 1 turns it off.
    """

    names: TopicNames
    model_name: str = "email"
    retrain_every: int = 2_000
    retrain_interval_s: float = 30.0
    min_rows: int = 200
    buffer_rows: int = 50_000
    seed: int = 0
    pacing: PacingConfig = field(default_factory=PacingConfig)
    version_guard: VersionGuardConfig = field(default_factory=VersionGuardConfig)

    @property
    def group_id(self) -> str:
        return f"{self.names.prefix}banditlp-trainer"
