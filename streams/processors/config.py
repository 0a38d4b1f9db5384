"""Settings of one scorer/learner worker: one frozen value, built once by the entry point."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from streams.errors import ConfigError
from streams.kafka.connection import GROUP_TIMEOUTS, GroupTimeouts
from streams.kafka.topics import TopicNames

_INSTANCE = re.compile(r"[A-Za-z0-9._-]{1,100}")


@dataclass(frozen=True)
class ProcessorConfig:
    """Settings of one scorer/learner worker.

    Attributes:
        app_id: faust app id (consumer group and changelog prefix).
        instance: this worker's name among the app's workers (``"0"``, ``"processors-2"``, a
            StatefulSet pod's name): stable across restarts of the same worker, distinct
            between workers. When set, the worker is a static member of the consumer group
            (KIP-345, ``group.instance.id`` = ``group_instance_id``): restarted within the
            session timeout it takes back its partitions with no rebalance. None: dynamic
            membership (a restart waits for the killed member's session to expire).
        group: the consumer group's session, heartbeat, poll and rebalance timeouts.
        tau: Thompson temperature (posterior covariance scale) for users with no tuner arm.
        experiment: the tuner experiment whose newest distribution (``parameter-distribution``,
            key ``experiment``) serves each user an arm, and with it the arm's ``tau``.
        n_draws: K, the Thompson draws per pair of every outcome the scorer publishes; the
            allocator solves one LP per draw and logs the exact propensity of the mixture.
        take: how many records an agent scores or learns from at once (vectorised).
        within_s: how long an agent waits to fill ``take``.
        context_slots: recent batches per user whose decision context is kept (the retention
            bound of the decision contexts; feedback older than that is dead-lettered as late).
        context_index_users: users whose slot index is cached in memory (LRU); a user not in
            it costs ``context_slots`` table reads when next scored or learned from.
        seen_limit: feedback ids per user remembered for deduplication.
        feature_dim: width of the pair features when no model snapshot exists yet (the cold-start
            prior's input); None takes the width of the first candidates record scored.
        model_wait_s: at start, how long the scorer waits for the model feed to read the
            snapshots topic to its end, so it scores with the newest model, not the prior.
        torch_threads: intra-op threads of the scoring model (``torch.set_num_threads``).
        stall_check_s: how often ``StallWatch`` looks for an input partition nobody reads.
        policies: who scores the conversion outcome: ``("banditlp",)`` the neural Thompson model
            alone (the scorer as it always was); registered policy names (``models.policies``,
            ``banditlp`` among them or not) share the users equally by a hash of the user id
            (``streams.score.policy_serving``). Checked against the registry here.
        policy_actions: arms of the registered policies' rounds: items map onto them by a hash
            of their id (``streams.score.policy_round``).
    """

    names: TopicNames
    state_dir: Path
    partitions: int = 4
    app_id: str = "banditlp-processors"
    tau: float = 1.0
    experiment: str = "tau"
    n_draws: int = 1
    model_name: str = "email"
    take: int = 500
    within_s: float = 0.05
    context_slots: int = 8
    context_index_users: int = 100_000
    seen_limit: int = 256
    max_candidates: int = 1_000
    random_effect_prior_precision: float = 25.0
    seed: int = 0
    web_port: int | None = None
    feature_dim: int | None = None
    model_wait_s: float = 30.0
    torch_threads: int = 1
    stall_check_s: float = 15.0
    instance: str | None = None
    group: GroupTimeouts = GROUP_TIMEOUTS
    policies: tuple[str, ...] = ("banditlp",)
    policy_actions: int = 64

    def __post_init__(self) -> None:
        if self.instance is not None and not _INSTANCE.fullmatch(self.instance):
            raise ConfigError(f"worker instance {self.instance!r} must be 1-100 letters, digits, '.', '_' or '-'")
        if self.policies != ("banditlp",):
            from streams.score.policy_serving import check_policies  # the registry imports torch

            object.__setattr__(self, "policies", check_policies(self.policies))
        if self.policy_actions < 1:
            raise ConfigError(f"policy_actions must be >= 1, got {self.policy_actions}")

    @property
    def group_instance_id(self) -> str | None:
        """The static member id of this worker in the app's group, or None (dynamic)."""
        return None if self.instance is None else f"{self.app_id}-{self.instance}"
