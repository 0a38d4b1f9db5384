"""DuaLip-style dual decomposition of the allocation LP, in torch (CPU or CUDA, float32 or float64).

The LP is perturbed by a ridge term, ``max r.x - gamma/2 ||x||^2``, which makes its dual smooth.
User caps stay in the primal: for duals ``y = (lambda, nu)`` the primal is
``x(y) = Proj_U((r - C^T lambda - nu[provider]) / gamma)`` with ``U`` the product of per-user capped
simplices (:mod:`allocator.projection`). Budgets (``lambda >= 0``) and provider rows are dualised;
each provider's range row ``lo_p <= sum_p x <= hi_p`` gets one free dual ``nu_p`` whose
non-smooth part ``psi(nu) = hi_p nu^+ - lo_p nu^-`` is handled by its proximal step (a shifted soft
threshold), so ``nu_p > 0`` means the maximum binds and ``nu_p < 0`` the minimum — the convention
of :mod:`allocator.result`.

The dual ``D(y) = max_{x in U} [(r - A^T y).x - gamma/2 ||x||^2] + lambda.B + psi(nu)`` is minimised
by FISTA with gradient-based restarts. Rows are normalised (each budget row by its norm, each
provider row by ``sqrt(n_p)``), so ``||A_normalised||^2 <= L + 1`` is a safe bound and the step of
row ``j`` is ``gamma / ((L + 1) ||a_j||^2)`` (the 1/Lipschitz step written in original units).
The safe bound is pessimistic (only pairs strictly inside their box feel a change of the duals),
so each step uses a local estimate instead: the Lipschitz constant read from successive gradients
(Barzilai-Borwein), ``||grad(w_k) - grad(w_{k-1})|| / ||w_k - w_{k-1}||`` in row-normalised
coordinates; the step is ``1 / (1.5 x`` the largest of the last five estimates), clamped between
the safe step and ``max_step`` times it. Momentum restarts when the dual objective rises or the
gradient points against the momentum (O'Donoghue & Candes).
``gamma`` goes through a continuation schedule (default ``10 g, g``, momentum restarted at each
change): the larger ``gamma`` finds the duals fast, the last stage is accurate.

A warm start (``dual_start``, e.g. the previous batch's duals) starts FISTA at those duals, at the
final ``gamma`` with no continuation; a start worse than zero (by the dual value) is dropped.

``gamma`` is relative: the ridge weight is ``gamma x max|r|``, so the QP optimum is within about
``gamma/2 x max|r| x ||x||^2`` of the LP optimum. Stopping: at the final ``gamma``, relative
duality gap ``(D(y) - Q(x)) / |Q(x)|`` and relative max violation of ``x(y)`` both ``<= tol``.
The gap is computed from the small vectors only, ``lambda.(B - Cx) + psi(nu) - nu.Px`` (plus the
penalties of the rows that give way, in elastic mode), so it is free of cancellation even in
float32. The test runs at the extrapolated point ``w``, which is kept inside the dual domain, so
every ``D(w)`` is a valid bound and no extra primal pass is needed.

Memory: the pairs are permuted once so that users of equal degree form dense ``(n_users, d)``
blocks (no padding, no per-user loop); per pair the solver holds ``r``, ``C`` (L rows), the
provider id, ``s`` and ``x`` — ``(L + 4)`` words, float32 or float64 — plus one ``tau`` per user.
Set the ``allocator.dual_decomposition`` logger to DEBUG to see the progress every 10 iterations.

Infeasibility: a pre-check (:mod:`allocator.feasibility`) first; then weak duality — if ``D(y)``
falls below ``sum_e min(0, r_e - gamma/2)``, a lower bound on the QP optimum of any feasible
instance, the LP is certified infeasible; and at the iteration limit, duals that kept growing
(x10 over the second half) while the violation stayed above ``10 tol`` are reported as divergence.
All three raise :class:`InfeasibleAllocation`. With ``elastic=True`` the duals are boxed
(``lambda_l <= rho_l``, ``nu_p >= -rho_p``), the exact dual of the elastic model of
:mod:`allocator.highs` with the same penalties, so the solve always converges.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from allocator.errors import ConstraintViolation, InfeasibilityReport, InfeasibleAllocation, ProblemValidationError
from allocator.feasibility import precheck
from allocator.highs import default_elastic_penalty
from allocator.problem import AllocationProblem
from allocator.projection import project_capped_simplex
from allocator.repair import repair as repair_allocation
from allocator.result import AllocationResult, Status
from allocator.violations import violations
from banditlp.arrays import FloatArray, IntArray

__all__ = ["solve_dual"]
log = logging.getLogger(__name__)


class _TensorOptions(TypedDict):
    """``dtype`` and ``device`` keywords of a torch factory, kept together."""

    dtype: torch.dtype
    device: torch.device


@dataclass
class _Layout:
    """Pairs permuted so that users of equal degree are contiguous: bucket ``b`` is a dense block.

    ``perm[j]`` is the original index of permuted pair ``j``; ``buckets`` holds
    ``(pair_start, n_rows, degree, row_start)`` per degree, ``row_start`` indexing ``caps``/``tau``.
    """

    perm: IntArray
    buckets: list[tuple[int, int, int, int]]
    caps: FloatArray


def _layout(problem: AllocationProblem) -> _Layout:
    off = problem.user_offsets
    deg = np.diff(off)
    users = np.flatnonzero(deg > 0)
    users = users[np.argsort(deg[users], kind="stable")]
    lens = deg[users]
    row_pair_start = np.concatenate(([0], np.cumsum(lens)[:-1]))
    perm = problem.user_order[np.repeat(off[users] - row_pair_start, lens) + np.arange(lens.sum())]
    change = np.flatnonzero(np.diff(lens)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [lens.size]))
    buckets = [(int(row_pair_start[s]), int(e - s), int(lens[s]), int(s)) for s, e in zip(starts, ends)]
    return _Layout(perm=perm, buckets=buckets, caps=problem.caps[users])


def solve_dual(
    problem: AllocationProblem,
    *,
    gamma: float = 1e-3,
    tol: float = 1e-4,
    max_iter: int = 3000,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    repair: bool = True,
    elastic: bool = False,
    elastic_penalty: float | None = None,
    continuation: tuple[float, ...] = (10.0, 1.0),
    stage_iter: int = 300,
    max_step: float = 1e4,
    keep_unrepaired: bool = True,
    dual_start: tuple[ArrayLike, ArrayLike] | None = None,
) -> AllocationResult:
    """Solve the allocation LP approximately by accelerated dual ascent, then repair the primal.

    Args:
        problem: the LP.
        gamma: ridge weight relative to ``max|r|`` (module docstring).
        tol: relative duality gap and relative max violation to stop at.
        max_iter: total dual iterations over all continuation stages.
        device: torch device (``"cpu"``, ``"cuda"``); the code is the same on both.
        dtype: ``torch.float32`` (half the memory traffic; gap and row sums still accurate to
            ~1e-6) or ``torch.float64``.
        repair: run :func:`allocator.repair.repair` on the final primal so that it is feasible.
        elastic: box the duals by the elastic penalties instead of raising on infeasibility.
        elastic_penalty: as in :func:`allocator.highs.solve_highs`.
        continuation: multiples of ``gamma`` for the stages, largest first, ending at 1.
        stage_iter: iterations at most per stage before the last (the last gets the rest).
        max_step: cap of the step, as a multiple of the safe 1/Lipschitz step.
        keep_unrepaired: keep the primal before repair in ``result.x_unrepaired``.
        dual_start: ``(budget_dual (L,), provider_dual (P,))`` to start from, in the units and
            sign convention of :attr:`AllocationResult.budget_dual` / ``.provider_dual`` (so a
            previous batch's ``(result.budget_dual, result.provider_dual)`` goes straight in;
            HiGHS' duals too). It is clipped into the dual domain (``lambda >= 0``; ``nu_p <= 0``
            where ``hi_p = inf``, ``nu_p >= 0`` where ``lo_p = -inf``; the elastic box), and the
            continuation is skipped: the solve runs at the final ``gamma`` only (see the comment
            in the code). Same stopping rule as a cold solve, so the same accuracy. A start
            whose dual value is worse than the cold start's (all duals 0) is dropped for the cold
            schedule; that check costs two primal passes, counted in ``result.iterations``.

    Returns:
        An :class:`AllocationResult`; ``status`` is ``"optimal"`` (tolerance met),
        ``"iteration_limit"`` or ``"elastic"``; ``max_violation_before_repair`` is relative.

    Raises:
        InfeasibleAllocation: pre-check conflict, weak-duality certificate or diverging duals.
        ProblemValidationError: ``dual_start`` is not a pair of finite arrays of shapes
            ``(L,)`` and ``(P,)``.
    """
    t0 = time.perf_counter()
    start = _check_dual_start(dual_start, problem.n_budgets, problem.n_providers)
    if not elastic and (found := precheck(problem)):
        raise InfeasibleAllocation(InfeasibilityReport("precheck", found, "allocation LP is infeasible"))
    dev = torch.device(device)
    lay = _layout(problem)
    perm = lay.perm
    n_l, n_p = problem.n_budgets, problem.n_providers

    def as_t(a: NDArray[Any], dt: torch.dtype = dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=dev)

    r = as_t(problem.reward[perm])
    cmat = as_t(problem.cost[:, perm])  # (L, E)
    prov = as_t(problem.provider[perm], torch.int64)
    caps = as_t(lay.caps)
    f64: _TensorOptions = {"dtype": torch.float64, "device": dev}
    budget = torch.tensor(problem.budget, **f64)
    lo = torch.tensor(problem.provider_min, **f64)
    hi = torch.tensor(problem.provider_max, **f64)
    scale = max(float(np.abs(problem.reward).max()), 1e-12)
    row_sq = torch.as_tensor((problem.cost**2).sum(axis=1), **f64).clamp(min=1e-300)
    prov_n = torch.as_tensor(problem.provider_size.astype(np.float64), **f64).clamp(min=1.0)
    lip = float(n_l + 1)  # ||A_normalised||^2 <= L + 1

    penalty = float(elastic_penalty) if elastic_penalty is not None else default_elastic_penalty(problem)
    cmax = torch.as_tensor(np.abs(problem.cost).max(axis=1) if n_l else np.zeros(0), **f64)
    lam_cap = penalty / torch.where(cmax > 0, cmax, torch.ones_like(cmax)) if elastic else None
    lb_feasible = float(np.minimum(problem.reward - gamma * scale / 2, 0).sum())  # QP opt >= this if feasible
    tau = torch.zeros_like(caps)
    sbuf = torch.empty_like(r)
    xbuf = torch.empty_like(r)

    def primal(lam: torch.Tensor, nu: torch.Tensor, g_abs: float) -> torch.Tensor:
        """x(y) into xbuf: s = (r - C^T lam - nu[prov]) / gamma, projected per user."""
        torch.index_select(nu.to(dtype), 0, prov, out=sbuf)
        torch.sub(r, sbuf, out=sbuf)
        if n_l:
            sbuf.addmv_(cmat.T, lam.to(dtype), alpha=-1.0)
        sbuf.mul_(1.0 / g_abs)
        for p0, nrows, d, row0 in lay.buckets:
            _, tb = project_capped_simplex(
                sbuf[p0 : p0 + nrows * d].view(nrows, d),
                caps[row0 : row0 + nrows],
                tau[row0 : row0 + nrows],
                out=xbuf[p0 : p0 + nrows * d].view(nrows, d),
            )
            tau[row0 : row0 + nrows] = tb
        return xbuf

    def rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cx = (cmat @ x).to(torch.float64) if n_l else torch.zeros(0, **f64)
        px = torch.zeros(n_p, dtype=dtype, device=dev).index_add_(0, prov, x).to(torch.float64)
        return cx, px

    def psi(nu: torch.Tensor) -> torch.Tensor:
        pos = torch.where(nu > 0, hi * nu, torch.zeros_like(nu))
        neg = torch.where(nu < 0, lo * nu, torch.zeros_like(nu))
        return (pos + neg).sum()

    # domain of nu: psi is +inf for nu > 0 when hi = inf and for nu < 0 when lo = -inf
    nu_max = torch.where(torch.isinf(hi), torch.zeros_like(hi), torch.full_like(hi, torch.inf))
    nu_min = torch.where(torch.isinf(lo), torch.zeros_like(lo), torch.full_like(lo, -torch.inf))
    if elastic:
        nu_min = nu_min.clamp(min=-penalty)

    def prox(
        lam_w: torch.Tensor, nu_w: torch.Tensor, cx: torch.Tensor, px: torch.Tensor, g_abs: float, mult: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The proximal gradient step from ``w``: ``(lambda, nu, step_lambda (L,), step_nu (P,))``."""
        step_l = mult * g_abs / (lip * row_sq)
        step_p = mult * g_abs / (lip * prov_n)
        lam = (lam_w - step_l * (budget - cx)).clamp(min=0.0)
        if lam_cap is not None:
            lam = torch.minimum(lam, lam_cap)
        v = nu_w + step_p * px
        up, dn = step_p * hi, step_p * lo
        nu = torch.where(v > up, v - up, torch.where(v < dn, v - dn, torch.zeros_like(v)))
        nu = torch.minimum(torch.maximum(nu, nu_min), nu_max)
        return lam, nu, step_l, step_p

    def evaluate(
        lam_w: torch.Tensor, nu_w: torch.Tensor, g_abs: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float]:
        """``(x (E,), Cx (L,), Px (P,), Q(x), D(w) - Q(x))`` at the dual point ``w``, ``lam_w >= 0``."""
        x = primal(lam_w, nu_w, g_abs)
        cx, px = rows(x)
        lam_d = lam_w.clamp(min=0.0)
        slack_gap = float(lam_d @ (budget - cx) + psi(nu_w) - nu_w @ px)
        qval = float(torch.dot(r, x)) - 0.5 * g_abs * float(torch.dot(x, x))
        if lam_cap is not None:  # elastic: the primal pays the penalties of the rows it lets give way
            pen = float(
                (lam_cap * (cx - budget).clamp(min=0)).sum()
                + penalty * (lo - px).clamp(min=0).nan_to_num(posinf=0.0).sum()
            )
            qval, slack_gap = qval - pen, slack_gap + pen
        return x, cx, px, qval, slack_gap

    lam = torch.zeros(n_l, **f64)
    nu = torch.zeros(n_p, **f64)
    stages = [c for c in continuation if c > 1.0] + [1.0]
    it = 0
    if start is not None:
        # The internal duals are in the result's units: x(y) = Proj_U((r - C^T lam - nu[p]) / g_abs),
        # so lam and nu are prices in reward units whatever gamma is, and the row normalisation
        # only enters the step sizes and the curvature estimate. A result's duals go in as they are.
        lam_s = torch.as_tensor(start[0], **f64).clamp(min=0.0)
        if lam_cap is not None:
            lam_s = torch.minimum(lam_s, lam_cap)
        nu_s = torch.minimum(torch.maximum(torch.as_tensor(start[1], **f64), nu_min), nu_max)
        # Continuation: skipped when warm. In these units the duals are comparable across stages
        # (they do not scale with gamma; y*(gamma) tends to the LP duals as gamma -> 0), but the
        # optimum moves: the 10 g stage pulls a good start away towards y*(10 g), the smoother
        # problem's optimum, and the last stage must walk back. The large gamma only helps to cross
        # the distance from 0 fast, which a start close to y*(g) does not need
        # (tests/unit/allocator/test_dual_warm_start.py: a start from another batch's duals takes
        # fewer iterations than a cold solve).
        # Guard: a start whose dual value at the final gamma is above that of the cold start
        # (all duals 0) is no better than no start; drop it for the cold schedule. Two primal
        # passes, counted in ``iterations``.
        g_final = gamma * scale
        d_zero = sum(evaluate(lam, nu, g_final)[3:])
        d_start = sum(evaluate(lam_s, nu_s, g_final)[3:])  # last, so tau is the start's
        it += 2
        if d_start <= d_zero:
            lam, nu, stages = lam_s, nu_s, [1.0]
        else:
            log.debug("dual_start dropped: dual value %.8g above the cold start's %.8g", d_start, d_zero)
    status, gap, rel_v = Status.ITERATION_LIMIT, float("inf"), float("inf")
    norms: list[float] = []
    for si, gmul in enumerate(stages):
        g_abs = gamma * scale * gmul
        last = si == len(stages) - 1
        budget_iter = max_iter - it if last else min(stage_iter, max_iter - it)
        stage_tol = tol * (1.0 if last else gmul**0.5)
        lam_w, nu_w, tk, mult, prev_d = lam.clone(), nu.clone(), 1.0, 1.0, float("inf")
        prev_g: torch.Tensor | None = None
        prev_y: torch.Tensor | None = None
        recent: list[float] = []
        for _ in range(budget_iter):
            it += 1
            # stopping test at the (feasible-dual) point w; see module docstring for the gap
            x, cx, px, qval, slack_gap = evaluate(lam_w, nu_w, g_abs)
            lam_d, nu_d = lam_w.clamp(min=0.0), nu_w
            dval = qval + slack_gap
            gap = abs(slack_gap) / max(abs(qval), 1e-12)
            viol_b = (cx - budget).clamp(min=0) / torch.maximum(budget.abs(), cmax.clamp(min=1e-300))
            viol_p = torch.maximum(
                (lo - px).clamp(min=0) / lo.abs().nan_to_num(posinf=1.0).clamp(min=1.0),
                (px - hi).clamp(min=0) / hi.abs().nan_to_num(posinf=1.0).clamp(min=1.0),
            )
            if lam_cap is not None:  # elastic: the model's soft rows do not count as violations
                viol_b = viol_b * (lam_d < lam_cap * (1 - 1e-9))
                viol_p = viol_p * ((nu_d > -penalty * (1 - 1e-9)) | (px > lo))
            rel_v = float(torch.cat([viol_b, viol_p]).max()) if (n_l + n_p) else 0.0
            if not elastic and dval < lb_feasible - 1e-9 * abs(lb_feasible) - 1e-12:
                raise InfeasibleAllocation(
                    InfeasibilityReport(
                        "dual",
                        violations(problem, _unpermute(x, perm)).listing(tol=tol),
                        f"allocation LP is infeasible: dual bound {dval:.6g} < {lb_feasible:.6g}, the least "
                        "objective any feasible point would reach (weak duality)",
                    )
                )
            if gap <= stage_tol and rel_v <= stage_tol:
                if last:
                    status = Status.OPTIMAL
                lam, nu = lam_d, nu_d
                break
            # local curvature from successive gradients at w, in row-normalised coordinates
            # (Barzilai-Borwein reading of the Lipschitz constant); the step is 1/(1.5 x the
            # largest recent estimate), never below the safe step nor above max_step times it
            gcat = torch.cat([(budget - cx) / row_sq.sqrt(), -px / prov_n.sqrt()])
            ycat = torch.cat([lam_w * row_sq.sqrt(), nu_w * prov_n.sqrt()])
            if prev_g is not None and prev_y is not None:
                dy = float(torch.linalg.vector_norm(ycat - prev_y))
                if dy > 0:
                    recent.append(float(torch.linalg.vector_norm(gcat - prev_g)) / dy)
                    del recent[:-5]
                    mult = min(max(lip / g_abs / (1.5 * max(recent) + 1e-300), 1.0), max_step)
            prev_g, prev_y = gcat, ycat
            if dval > prev_d + 1e-12 * abs(prev_d):  # function restart of the momentum
                tk = 1.0
            prev_d = dval
            if log.isEnabledFor(logging.DEBUG) and it % 10 == 0:
                log.debug("it %d gamma x%g step x%.3g gap %.2e viol %.2e dual %.8g", it, gmul, mult, gap, rel_v, dval)
            lam_new, nu_new, step_l, step_p = prox(lam_w, nu_w, cx, px, g_abs, mult)
            # gradient restart (O'Donoghue & Candes) in the step-weighted metric
            if (
                float(
                    ((lam_new - lam) * (lam_w - lam_new) / step_l).sum()
                    + ((nu_new - nu) * (nu_w - nu_new) / step_p).sum()
                )
                > 0
            ):
                tk = 1.0
                lam_w, nu_w = lam_new, nu_new
            else:
                tk1 = (1 + (1 + 4 * tk * tk) ** 0.5) / 2
                beta = (tk - 1) / tk1
                lam_w = (lam_new + beta * (lam_new - lam)).clamp(min=0.0)
                if lam_cap is not None:
                    lam_w = torch.minimum(lam_w, lam_cap)
                nu_w = torch.minimum(torch.maximum(nu_new + beta * (nu_new - nu), nu_min), nu_max)
                tk = tk1
            lam, nu = lam_new, nu_new
            norms.append(float(torch.sqrt((lam**2 * row_sq).sum() + (nu**2 * prov_n).sum())))
        if last or it >= max_iter:
            break
    x_np = _unpermute(x, perm)
    if (
        not elastic
        and status != Status.OPTIMAL
        and rel_v > 10 * tol
        and len(norms) > 20
        and norms[-1] > 10 * max(norms[len(norms) // 2], 1e-300)
    ):
        raise InfeasibleAllocation(
            InfeasibilityReport(
                "dual",
                violations(problem, x_np).listing(tol=tol),
                f"allocation LP looks infeasible: duals grew x{norms[-1] / max(norms[len(norms) // 2], 1e-300):.3g} "
                f"over the last {len(norms) - len(norms) // 2} iterations while the violation stayed at {rel_v:.3g}",
            )
        )
    before = violations(problem, x_np).max_relative_violation
    x_final = x_np
    listing: tuple[ConstraintViolation, ...] = ()
    if repair:
        score = problem.reward - problem.cost.T @ lam.cpu().numpy() if n_l else problem.reward
        x_final = repair_allocation(problem, x_np, score=score, hard_only=elastic)
    viol = violations(problem, x_final)
    if elastic:
        listing = viol.listing(tol=10 * tol)
        if listing:
            status = Status.ELASTIC
        elif repair:  # nothing needed to give way: make it exactly feasible
            x_final = repair_allocation(problem, x_np, score=score)
            viol = violations(problem, x_final)
    return AllocationResult(
        x=x_final,
        objective=float(problem.reward @ x_final),
        budget_dual=lam.cpu().numpy(),
        provider_dual=nu.cpu().numpy(),
        status=status,
        max_violation=viol.max_violation,
        max_relative_violation=viol.max_relative_violation,
        iterations=it,
        seconds=time.perf_counter() - t0,
        solver="dual",
        violations=listing,
        x_unrepaired=x_np if keep_unrepaired else None,
        max_violation_before_repair=before,
        duality_gap=gap,
    )


def _check_dual_start(
    dual_start: tuple[ArrayLike, ArrayLike] | None, n_budgets: int, n_providers: int
) -> tuple[FloatArray, FloatArray] | None:
    """``dual_start`` as two float64 arrays ``(L,)`` and ``(P,)``, or None; raises on bad input.

    Only the shapes and finiteness are checked here; clipping into the dual domain needs the
    problem's bounds and happens in :func:`solve_dual`.
    """
    if dual_start is None:
        return None
    if isinstance(dual_start, (str, bytes)) or not hasattr(dual_start, "__len__") or len(dual_start) != 2:
        raise ProblemValidationError(
            f"dual_start: expected a pair (budget_dual (L,), provider_dual (P,)), got {type(dual_start).__name__}"
        )
    out = []
    for name, arr, n in (("budget_dual", dual_start[0], n_budgets), ("provider_dual", dual_start[1], n_providers)):
        try:
            a = np.asarray(arr, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ProblemValidationError(f"dual_start {name}: not an array of numbers ({exc})") from None
        if a.shape != (n,):
            raise ProblemValidationError(f"dual_start {name}: expected shape ({n},), got {a.shape}")
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise ProblemValidationError(f"dual_start {name}: must be finite, got {a[bad[0]]} at index {int(bad[0])}")
        out.append(a)
    return out[0], out[1]


def _unpermute(x: torch.Tensor, perm: IntArray) -> FloatArray:
    """(n_pairs,) float64 numpy array in the problem's pair order from the permuted tensor."""
    out = np.zeros(perm.shape[0], dtype=np.float64)
    out[perm] = x.detach().to("cpu", torch.float64).numpy()
    return out
