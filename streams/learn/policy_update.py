"""Learning a registered policy from one feedback record, pure: the round it was scored in, rebuilt
from the decision context, and ``Policy.update``.

The scorer stored the user's candidates (item ids and pair features, in record order) in the
decision context; :mod:`streams.score.policy_round` maps them onto the catalogue's arms the same
way again, so the round and the action are exactly those the policy scored: the item's arm, in
the layer (round) that held it. The reward is the conversion (0 or 1), the outcome whose scores
the policy supplied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from banditlp.arrays import FloatArray
from models.policies.base import Policy
from streams.learn.update import DecisionContext
from streams.records import FeedbackRecord
from streams.score.policy_round import Catalogue, layers


@dataclass(frozen=True, eq=False)
class PolicyFeedback:
    """One observation for ``Policy.update``.

    Attributes:
        action: the fed-back item's arm.
        features: ``(n_actions, d)`` float64 the round that scored it.
        reward: ``1.0`` if the item converted, else ``0.0``.
    """

    action: int
    features: FloatArray
    reward: float


def policy_feedback(fb: FeedbackRecord, context: DecisionContext, catalogue: Catalogue) -> PolicyFeedback:
    """The observation ``fb`` gives the policy that scored ``context`` (which ``holds(fb)``)."""
    arms = catalogue.arms(context.items)
    j = context.items.index(fb.item_id)
    layer = layers(arms)
    rows = np.flatnonzero(layer == layer[j])
    matrix = np.zeros((catalogue.n_actions, context.features.shape[1]), dtype=np.float64)
    matrix[arms[rows]] = context.features[rows]
    return PolicyFeedback(int(arms[j]), matrix, float(fb.converted))


def learn_policy(policy: Policy, fb: FeedbackRecord, context: DecisionContext, catalogue: Catalogue) -> None:
    """``policy.update`` with the observation of ``fb`` (:func:`policy_feedback`)."""
    obs = policy_feedback(fb, context, catalogue)
    policy.update(obs.action, obs.features, obs.reward)
