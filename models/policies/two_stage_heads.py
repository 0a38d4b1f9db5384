"""The acquisition heads of the two-stage paper: S-N-GALM (eq. 3), S-N-GBLM (eq. 4), GLM (eq. 2).

A head scores rows ``[x, z]`` (the item or topic representation ``x ∈ R^{d_1}``, then the user
representation ``z ∈ R^{d_2}``) and learns from one observed row at a time; the policies of
:mod:`models.policies.two_stage` use one head per stage. Every head speaks the same verbs:

* ``acquisition(rows, beta, arms=None, rng=None) -> (mean, uncertainty, value)``, each (n,):
  ``arms`` (n,) names the arm (item or topic index) of each row, for heads with per-arm state;
* ``update(row, y, arm=0, rng=None)``: one observation;
* ``arrays(prefix)`` / ``load(arrays, prefix)``: the state for snapshots.

``x`` is augmented with a 1 (Table 3's bias): ``x̃ = (x, 1)``; ρ is the sigmoid.

Users. The paper keeps per-user matrices (GLM-UCB's ``M_u``, eq. 3's ``A_i``); the contract
gives no user id, so a user is the bytes of its representation ``z`` (the world's user tower is
fixed during a run). :class:`UserIndex` maps them to dense indices; a user never observed has
the prior (identity matrix, zero coefficients).

Fitting. The paper fits the GLM coefficients by gradient descent; each head here takes one
preconditioned step per observation, ``θ̂ += η G⁻¹ φ (y − ρ(φᵀθ̂))`` with ``G = I + Σ φφᵀ`` the
Gram matrix of the same features (the recursive-least-squares form of that fit, kept as an
inverse by Sherman–Morrison).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from banditlp.arrays import FloatArray, IntArray
from models.errors import ModelInputError


def sigmoid(x: FloatArray) -> FloatArray:
    """ρ, elementwise, without overflow."""
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


def quad(M: FloatArray, X: FloatArray) -> FloatArray:
    """(n,) ``sqrt(x_nᵀ M x_n)`` for rows of X (n, k) and one M (k, k)."""
    if X.shape[1] == 0:
        return np.zeros(X.shape[0])
    out: FloatArray = np.sqrt(np.maximum(np.einsum("nk,nk->n", X @ M, X), 0.0))
    return out


def quad_each(Ms: FloatArray, X: FloatArray) -> FloatArray:
    """(n,) ``sqrt(x_nᵀ M_n x_n)`` for rows of X (n, k) and their own M_n, Ms (n, k, k)."""
    if X.shape[1] == 0:
        return np.zeros(X.shape[0])
    out: FloatArray = np.sqrt(np.maximum(np.einsum("nk,nkl,nl->n", X, Ms, X), 0.0))
    return out


def sherman_morrison(Ainv: FloatArray, v: FloatArray) -> FloatArray:
    """``(A + v vᵀ)⁻¹`` from ``A⁻¹`` (k, k) and v (k,)."""
    Av = Ainv @ v
    out: FloatArray = Ainv - np.outer(Av, Av) / (1.0 + v @ Av)
    return out


def augment(X: FloatArray) -> FloatArray:
    """(n, k + 1) the rows of X (n, k) with a trailing 1."""
    return np.concatenate([X, np.ones((X.shape[0], 1))], axis=1)


class UserIndex:
    """Dense indices of users keyed by the bytes of their representation z (module docstring).

    State: ``keys`` (n_users, d_2), row ``u`` the representation of user ``u``.
    """

    def __init__(self, d2: int) -> None:
        self.d2 = d2
        self.keys = np.zeros((0, d2))
        self._index: dict[bytes, int] = {}

    def lookup(self, Z: FloatArray) -> IntArray:
        """(n,) the index of each row of Z (n, d_2), −1 for a user never added."""
        if Z.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        if np.all(Z == Z[0]):  # one user per round, the usual case: one dictionary lookup
            return np.full(Z.shape[0], self._index.get(Z[0].tobytes(), -1), dtype=np.int64)
        return np.array([self._index.get(z.tobytes(), -1) for z in Z], dtype=np.int64)

    def add(self, z: FloatArray) -> tuple[int, bool]:
        """The index of user ``z`` (d_2,), and whether it was new (then it takes the next index)."""
        key = np.ascontiguousarray(z, dtype=np.float64).tobytes()
        if key in self._index:
            return self._index[key], False
        self._index[key] = len(self._index)
        self.keys = np.concatenate([self.keys, np.asarray(z, dtype=np.float64)[None, :]])
        return self._index[key], True

    def load(self, keys: np.ndarray) -> None:
        """Restore from :attr:`keys`."""
        self.keys = np.array(keys, dtype=np.float64).reshape(-1, self.d2)
        self._index = {k.tobytes(): i for i, k in enumerate(self.keys)}


Confidence = Literal["paper", "shared"]


class GalmHead:
    """S-N-GALM (eq. 3): ``ρ(γ x̃ᵀθ̂_x + γ̃ θ̂_zᵀz) + β (γ ‖x̃‖_{A_i⁻¹} + γ̃ ‖z‖_{A_u⁻¹})``, γ̃ = 1 − γ.

    Confidence matrices, ``confidence="paper"`` (eq. 3 as written): ``A_i = I + D_iᵀD_i`` where
    the rows of ``D_i`` are the item representations observed *with this user*, and
    ``A_u = I + D_uᵀD_u`` where the rows of ``D_u`` are the users *this item* was recommended
    to. So ``A_i`` is per user ((d_1 + 1)², one per user) and ``A_u`` per arm (d_2², one per
    arm): a user's bonus shrinks along the item directions it has seen, an item's along the
    users it has been shown to. ``confidence="shared"``: one ``A_x`` and one ``A_z`` over every
    observation (the first build of this module), where the ``z`` term is the same for every row
    of a round and so cannot rank.

    The fit (module docstring) is shared in both cases: ``P_x = I + Σ x̃x̃ᵀ``, ``P_z = I + Σ zzᵀ``
    over every observation, kept as ``Ainv_x``, ``Ainv_z``.

    State: ``theta_x`` (d_1 + 1,), ``theta_z`` (d_2,), ``Ainv_x``, ``Ainv_z``; in paper mode also
    ``users`` (n_users, d_2), ``Ainv_user`` (n_users, d_1 + 1, d_1 + 1) and ``Ainv_arm``
    (n_arms, d_2, d_2).
    """

    def __init__(
        self, d1: int, d2: int, gamma: float, eta: float, *, n_arms: int = 1, confidence: Confidence = "paper"
    ) -> None:
        if confidence not in ("paper", "shared"):
            raise ModelInputError(f"confidence must be 'paper' or 'shared', got {confidence!r}")
        self.d1, self.d2, self.gamma, self.eta = d1, d2, gamma, eta
        self.n_arms, self.confidence = n_arms, confidence
        self.theta_x = np.zeros(d1 + 1)
        self.theta_z = np.zeros(d2)
        self.Ainv_x = np.eye(d1 + 1)
        self.Ainv_z = np.eye(d2)
        self.users = UserIndex(d2)
        self.Ainv_user = np.zeros((0, d1 + 1, d1 + 1))
        self.Ainv_arm = np.broadcast_to(np.eye(d2), (n_arms, d2, d2)).copy() if confidence == "paper" else None

    def _split(self, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        return augment(rows[:, : self.d1]), rows[:, self.d1 :]

    def _arms(self, arms: IntArray | None, n: int) -> IntArray:
        return np.zeros(n, dtype=np.int64) if arms is None else np.asarray(arms, dtype=np.int64)

    def bonus_terms(self, rows: FloatArray, arms: IntArray | None = None) -> tuple[FloatArray, FloatArray]:
        """(n,) ``‖x̃‖_{A_i⁻¹}`` and (n,) ``‖z‖_{A_u⁻¹}`` of eq. 3 (unweighted)."""
        X, Z = self._split(rows)
        if self.confidence == "shared":
            return quad(self.Ainv_x, X), quad(self.Ainv_z, Z)
        assert self.Ainv_arm is not None
        u = self.users.lookup(Z)
        known = u >= 0
        ux = np.sqrt(np.einsum("nk,nk->n", X, X))  # the prior A_i = I of a user never observed
        if known.any():
            ux[known] = quad_each(self.Ainv_user[u[known]], X[known])
        return ux, quad_each(self.Ainv_arm[self._arms(arms, len(rows))], Z)

    def acquisition(
        self,
        rows: FloatArray,
        beta: float,
        arms: IntArray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Eq. 3 for rows (n, d_1 + d_2): ``(ρ(ℓ), γ‖x̃‖ + γ̃‖z‖, α)``, each (n,)."""
        X, Z = self._split(rows)
        g, gt = self.gamma, 1.0 - self.gamma
        mean = sigmoid(g * (X @ self.theta_x) + gt * (Z @ self.theta_z))
        if not beta:
            return mean, np.zeros(len(rows)), mean.copy()
        ux, uz = self.bonus_terms(rows, arms)
        unc = g * ux + gt * uz
        return mean, unc, mean + beta * unc

    def update(self, row: FloatArray, y: float, arm: int = 0, rng: np.random.Generator | None = None) -> None:
        """One observation ``(x, z, y)`` of arm ``arm``: the fit's inverses, one step, the bonus matrices."""
        X, Z = self._split(row[None, :])
        x, z = X[0], Z[0]
        g, gt = self.gamma, 1.0 - self.gamma
        residual = y - float(sigmoid(np.asarray(g * x @ self.theta_x + gt * z @ self.theta_z)))
        self.Ainv_x = sherman_morrison(self.Ainv_x, x)
        self.theta_x = self.theta_x + self.eta * g * residual * (self.Ainv_x @ x)
        if self.d2:
            self.Ainv_z = sherman_morrison(self.Ainv_z, z)
            self.theta_z = self.theta_z + self.eta * gt * residual * (self.Ainv_z @ z)
        if self.confidence == "paper":
            assert self.Ainv_arm is not None
            u, new = self.users.add(z)
            if new:
                self.Ainv_user = np.concatenate([self.Ainv_user, np.eye(self.d1 + 1)[None]])
            self.Ainv_user[u] = sherman_morrison(self.Ainv_user[u], x)
            if self.d2:
                self.Ainv_arm[arm] = sherman_morrison(self.Ainv_arm[arm], z)

    _FIELDS = ("theta_x", "theta_z", "Ainv_x", "Ainv_z")

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The state under ``prefix``-ed names."""
        out = {f"{prefix}{k}": getattr(self, k) for k in self._FIELDS}
        if self.confidence == "paper":
            assert self.Ainv_arm is not None
            out |= {f"{prefix}users": self.users.keys, f"{prefix}Ainv_user": self.Ainv_user}
            out[f"{prefix}Ainv_arm"] = self.Ainv_arm
        return out

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        """Restore :meth:`arrays` output."""
        for k in self._FIELDS:
            setattr(self, k, np.array(arrays[f"{prefix}{k}"], dtype=np.float64))
        if self.confidence == "paper":
            self.users.load(arrays[f"{prefix}users"])
            self.Ainv_user = np.array(arrays[f"{prefix}Ainv_user"], dtype=np.float64)
            self.Ainv_arm = np.array(arrays[f"{prefix}Ainv_arm"], dtype=np.float64)


def bilinear_features(X: FloatArray, Z: FloatArray) -> FloatArray:
    """(n, k_x·k_z) ``vec(x_n z_nᵀ)`` (row-major: entry ``a·k_z + b`` is ``x_a z_b``) of X (n, k_x), Z (n, k_z)."""
    out: FloatArray = np.einsum("na,nb->nab", X, Z).reshape(X.shape[0], -1)
    return out


class GblmHead:
    """S-N-GBLM (eq. 4): ``ρ(x̃ᵀΘ̂z̃) + β ‖vec(x̃z̃ᵀ)‖_{W_t⁻¹}``, ``W_t = I + Σ_s vec(x̃_s z̃_sᵀ) vec(·)ᵀ``.

    One Θ shared by every (user, item) pair. Both towers are augmented with a 1 (``z̃ = (z, 1)``
    as well as ``x̃``), so Θ̂ also holds an item-only and a user-only linear term and a bias:
    ``x̃ᵀΘz̃ = xᵀΘ₀z + xᵀθ_x + θ_zᵀz + b``. The bilinear model is the linear one on
    ``φ = vec(x̃z̃ᵀ)`` (Jang et al. 2021): ``x̃ᵀΘz̃ = ⟨φ, vec Θ⟩``, so W⁻¹ is kept by
    Sherman–Morrison and Θ̂ fitted by the module's preconditioned step on φ with ``G = W_t``.

    State: ``theta`` (k,) = vec Θ̂ and ``Winv`` (k, k), k = (d_1 + 1)(d_2 + 1).
    """

    def __init__(self, d1: int, d2: int, eta: float) -> None:
        self.d1, self.d2, self.eta = d1, d2, eta
        k = (d1 + 1) * (d2 + 1)
        self.theta = np.zeros(k)
        self.Winv = np.eye(k)

    def features(self, rows: FloatArray) -> FloatArray:
        """(n, k) φ of rows (n, d_1 + d_2)."""
        return bilinear_features(augment(rows[:, : self.d1]), augment(rows[:, self.d1 :]))

    def acquisition(
        self,
        rows: FloatArray,
        beta: float,
        arms: IntArray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Eq. 4 for rows (n, d_1 + d_2): ``(ρ(φᵀθ̂), ‖φ‖_{W⁻¹}, α)``, each (n,)."""
        phi = self.features(rows)
        mean = sigmoid(phi @ self.theta)
        if not beta:
            return mean, np.zeros(len(rows)), mean.copy()
        unc = quad(self.Winv, phi)
        return mean, unc, mean + beta * unc

    def update(self, row: FloatArray, y: float, arm: int = 0, rng: np.random.Generator | None = None) -> None:
        """One observation: ``W⁻¹`` by Sherman–Morrison, then ``θ̂ += η W⁻¹φ (y − ρ(φᵀθ̂))``."""
        phi = self.features(row[None, :])[0]
        residual = y - float(sigmoid(np.asarray(phi @ self.theta)))
        self.Winv = sherman_morrison(self.Winv, phi)
        self.theta = self.theta + self.eta * residual * (self.Winv @ phi)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The state under ``prefix``-ed names."""
        return {f"{prefix}theta": self.theta, f"{prefix}Winv": self.Winv}

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        """Restore :meth:`arrays` output."""
        self.theta = np.array(arrays[f"{prefix}theta"], dtype=np.float64)
        self.Winv = np.array(arrays[f"{prefix}Winv"], dtype=np.float64)


class PerUserGlm:
    """GLM-UCB (eq. 2) with one coefficient per user: ``ρ(cᵀθ̂_u) + β ‖c‖_{M_u⁻¹}``, ``M_u = I + D_uᵀD_u``.

    ``c`` is any (n, k) context (the raw item representation x̃ for GLM-UCB, a network's last
    layer for N-GLM-UCB); users are given as :class:`UserIndex` indices. A user never observed
    (index −1) has the prior width ``‖c‖`` (M_u = I) and, for its mean, a pooled fit over every
    user's observations (so a new user's rows do not all tie at ρ(0)); its own θ̂_u starts at 0
    with its first observation, as in the paper's per-user fit.

    State: ``theta`` (n_users, k), ``Minv`` (n_users, k, k), ``theta0`` (k,), ``Minv0`` (k, k).
    """

    def __init__(self, k: int, eta: float) -> None:
        self.k, self.eta = k, eta
        self.theta: FloatArray = np.zeros((0, k))
        self.Minv: FloatArray = np.zeros((0, k, k))
        self.theta0: FloatArray = np.zeros(k)
        self.Minv0: FloatArray = np.eye(k)

    def acquisition(self, C: FloatArray, users: IntArray, beta: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Eq. 2 for contexts C (n, k) of users (n,): ``(ρ(cᵀθ̂_u), ‖c‖_{M_u⁻¹}, α)``, each (n,)."""
        known = (users >= 0) & (users < self.theta.shape[0])
        logit = C @ self.theta0
        unc = np.sqrt(np.einsum("nk,nk->n", C, C))
        if known.any():
            logit[known] = np.einsum("nk,nk->n", C[known], self.theta[users[known]])
            unc[known] = quad_each(self.Minv[users[known]], C[known])
        mean = sigmoid(logit)
        if not beta:
            return mean, np.zeros(len(C)), mean.copy()
        return mean, unc, mean + beta * unc

    def update(self, c: FloatArray, user: int, y: float) -> None:
        """One observation of user ``user`` (a :class:`UserIndex` index; users beyond the state start at the prior)."""
        grow = user + 1 - self.theta.shape[0]
        if grow > 0:
            self.theta = np.concatenate([self.theta, np.zeros((grow, self.k))])
            self.Minv = np.concatenate([self.Minv, np.broadcast_to(np.eye(self.k), (grow, self.k, self.k))])
        residual = y - float(sigmoid(np.asarray(c @ self.theta[user])))
        self.Minv[user] = sherman_morrison(self.Minv[user], c)
        self.theta[user] = self.theta[user] + self.eta * residual * (self.Minv[user] @ c)
        residual0 = y - float(sigmoid(np.asarray(c @ self.theta0)))
        self.Minv0 = sherman_morrison(self.Minv0, c)
        self.theta0 = self.theta0 + self.eta * residual0 * (self.Minv0 @ c)

    def reset(self) -> None:
        """Back to the prior for every user (the context space changed)."""
        self.theta = np.zeros((0, self.k))
        self.Minv = np.zeros((0, self.k, self.k))
        self.theta0 = np.zeros(self.k)
        self.Minv0 = np.eye(self.k)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The state under ``prefix``-ed names."""
        names = ("theta", "Minv", "theta0", "Minv0")
        return {f"{prefix}{k}": getattr(self, k) for k in names}

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        """Restore :meth:`arrays` output."""
        k = self.k
        self.theta = np.array(arrays[f"{prefix}theta"], dtype=np.float64).reshape(-1, k)
        self.Minv = np.array(arrays[f"{prefix}Minv"], dtype=np.float64).reshape(-1, k, k)
        self.theta0 = np.array(arrays[f"{prefix}theta0"], dtype=np.float64)
        self.Minv0 = np.array(arrays[f"{prefix}Minv0"], dtype=np.float64)


class GlmHead:
    """GLM-UCB (eq. 2) on the raw item representation ``c = x̃`` with a coefficient per user."""

    def __init__(self, d1: int, d2: int, eta: float) -> None:
        self.d1, self.d2 = d1, d2
        self.users = UserIndex(d2)
        self.glm = PerUserGlm(d1 + 1, eta)

    def acquisition(
        self,
        rows: FloatArray,
        beta: float,
        arms: IntArray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Eq. 2 for rows (n, d_1 + d_2), each row's user read from its z."""
        return self.glm.acquisition(augment(rows[:, : self.d1]), self.users.lookup(rows[:, self.d1 :]), beta)

    def update(self, row: FloatArray, y: float, arm: int = 0, rng: np.random.Generator | None = None) -> None:
        """One observation of the row's user."""
        user, _ = self.users.add(row[self.d1 :])
        self.glm.update(augment(row[None, : self.d1])[0], user, y)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The state under ``prefix``-ed names."""
        return {f"{prefix}users": self.users.keys, **self.glm.arrays(prefix)}

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        """Restore :meth:`arrays` output."""
        self.users.load(arrays[f"{prefix}users"])
        self.glm.load(arrays, prefix)


class RandomHead:
    """Random scores: every row's mean and value a fresh U(0, 1) draw from the round's rng."""

    def acquisition(
        self,
        rows: FloatArray,
        beta: float,
        arms: IntArray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(n,) U(0, 1) draws as mean and value, zero uncertainty."""
        assert rng is not None
        u = rng.random(len(rows))
        return u, np.zeros(len(rows)), u.copy()

    def update(self, row: FloatArray, y: float, arm: int = 0, rng: np.random.Generator | None = None) -> None:
        """Nothing to learn."""

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """No state."""
        return {}

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        """No state."""
