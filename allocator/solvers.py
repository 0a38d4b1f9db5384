"""The solver registry: a name for every LP solver, and the one rule that picks one by size.

One registry per concept, as DuaLip keeps its objectives and projections: a solver is a
function ``solve(problem, **options) -> AllocationResult`` registered under a name, and every
caller (:func:`allocator.solve`, the allocator worker, the ``lp`` command) looks it up here.
Two are built in:

- ``"highs"``: :func:`allocator.highs.solve_highs`, exact (HiGHS' interior-point method);
- ``"dual"``: :func:`allocator.dual_decomposition.solve_dual`, dual decomposition in torch.

They are imported on first lookup, so ``import allocator`` loads neither highspy nor torch.

``"auto"`` is not a solver but a choice by size, :func:`auto_solver`: HiGHS at or below
:data:`AUTO_THRESHOLD` pairs, the dual solver above. :func:`fallback_order` is that choice
followed by the other solver, the order in which the allocator worker tries them when the first
fails or returns an ``x`` out of tolerance.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from allocator.errors import ProblemValidationError
from allocator.problem import AllocationProblem
from allocator.result import AllocationResult

#: A solver: ``solve(problem, **options) -> AllocationResult``; each takes its own options.
SolveFn = Callable[..., AllocationResult]

#: Pairs at or below which ``"auto"`` picks HiGHS; above it, the dual solver. On the benchmark
#: instances of ``bench/bench_allocator.py`` (10 candidates per user, 2 budgets, 50 providers,
#: caps 1-2; bench/results/allocator-cpu-2core.json, 2 cores) the dual solver is already 2.0x
#: faster than HiGHS' IPM at 10,000 pairs and 5.7x at 100,000, at a relative objective gap of
#: 5e-4 and 3.5e-5. HiGHS stays the choice for small LPs, where it costs well under a second and
#: its optimum and duals are exact.
AUTO_THRESHOLD = 50_000

HIGHS = "highs"
DUAL = "dual"
AUTO = "auto"

# name -> (module, attribute) of the built-in solvers, resolved on first lookup
_BUILT_IN: dict[str, tuple[str, str]] = {
    HIGHS: ("allocator.highs", "solve_highs"),
    DUAL: ("allocator.dual_decomposition", "solve_dual"),
}
_REGISTRY: dict[str, SolveFn] = {}


def register(name: str, solve: SolveFn, *, replace: bool = False) -> SolveFn:
    """Make ``solve`` usable as ``allocator.solve(problem, solver=name, **options)``.

    Args:
        name: the solver's name; not ``"auto"``, which names the choice by size.
        solve: ``solve(problem, **options) -> AllocationResult``.
        replace: allow replacing a solver registered under ``name`` (a built-in included).

    Returns:
        ``solve``, unchanged.

    Raises:
        ValueError: ``name`` is empty or ``"auto"``, or is taken and ``replace`` is False.
    """
    if not name or name == AUTO:
        raise ValueError(f"solver name {name!r} is reserved or empty")
    if not replace and name in solver_names():
        raise ValueError(f"a solver named {name!r} is already registered")
    _REGISTRY[name] = solve
    return solve


def solver_names() -> tuple[str, ...]:
    """The names of every registered solver (built-ins included), sorted."""
    return tuple(sorted(set(_BUILT_IN) | set(_REGISTRY)))


def get_solver(name: str) -> SolveFn:
    """The solver registered under ``name``.

    Raises:
        ProblemValidationError: no solver has that name; the message lists the known ones.
    """
    if name not in _REGISTRY and name in _BUILT_IN:
        module, attr = _BUILT_IN[name]
        fn: SolveFn = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = fn
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(repr(n) for n in (*solver_names(), AUTO))
        raise ProblemValidationError(f"solver: unknown solver {name!r}; known solvers: {known}") from None


def auto_solver(n_pairs: int, *, threshold: int = AUTO_THRESHOLD) -> str:
    """The solver ``"auto"`` picks for an LP of ``n_pairs`` pairs.

    Args:
        n_pairs: the LP's number of pairs (variables).
        threshold: pairs at or below which HiGHS is picked (default :data:`AUTO_THRESHOLD`).

    Returns:
        ``"highs"`` when ``n_pairs <= threshold``, else ``"dual"``.
    """
    return HIGHS if n_pairs <= threshold else DUAL


def fallback_order(n_pairs: int, *, threshold: int = AUTO_THRESHOLD) -> tuple[str, ...]:
    """The solvers to try in turn: :func:`auto_solver`'s choice first, then the other one.

    Args:
        n_pairs: the LP's number of pairs.
        threshold: as in :func:`auto_solver`.

    Returns:
        ``("highs", "dual")`` at or below ``threshold``, ``("dual", "highs")`` above it.
    """
    first = auto_solver(n_pairs, threshold=threshold)
    return (first, DUAL if first == HIGHS else HIGHS)


def solve(problem: AllocationProblem, solver: str = AUTO, **options: Any) -> AllocationResult:
    """Solve the allocation LP with a registered solver, or the one :func:`auto_solver` picks.

    Args:
        problem: the LP.
        solver: ``"highs"`` (exact), ``"dual"`` (fast at scale), another registered name
            (:func:`solver_names`), or ``"auto"``: HiGHS at or below :data:`AUTO_THRESHOLD`
            pairs, the dual solver above.
        **options: passed on to the solver (for the built-ins, the keywords of
            :func:`allocator.highs.solve_highs` or :func:`allocator.dual_decomposition.solve_dual`;
            ``elastic`` is understood by both). ``dual_start=(budget_dual (L,), provider_dual (P,))``
            warm-starts the dual solver (e.g. from the previous batch's result). HiGHS takes no
            dual start: with ``solver="highs"`` one other than None raises; with ``solver="auto"``
            it is dropped when HiGHS is picked, so a caller can pass the last batch's duals on
            every batch without knowing which solver the size picks.

    Returns:
        The solver's :class:`AllocationResult`.

    Raises:
        InfeasibleAllocation: see the chosen solver.
        ProblemValidationError: ``solver`` is unknown, ``dual_start`` is given with
            ``solver="highs"``, or it is malformed and the dual solver runs (see ``solve_dual``).
    """
    name = auto_solver(problem.n_pairs) if solver == AUTO else solver
    fn = get_solver(name)
    if name == HIGHS:
        if solver != AUTO and options.get("dual_start") is not None:
            raise ProblemValidationError(
                "dual_start: HiGHS takes no dual start; it is for solver='dual' "
                "(or 'auto', which drops it when it picks HiGHS)"
            )
        options.pop("dual_start", None)
    return fn(problem, **options)
