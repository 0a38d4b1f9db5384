"""``banditlp lp``: solve an allocation LP from a problem ``.npz``, or write a random one.

Thin: parse flags, call ``allocator``, print a rich table. Typed errors become one line on stderr
and exit code 2 (no traceback).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from banditlp.errors import BanditLPError
from streams.cli.common import console, fail

lp_app = typer.Typer(
    help="The per-send-batch allocation LP: solve a problem .npz, or generate a random one.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@lp_app.command("solve")
def solve_cmd(
    problem: Path = typer.Argument(
        ..., help="Problem .npz (user, item, reward, cost, budget, provider, provider_min, provider_max, user_cap)."
    ),
    solver: str = typer.Option(
        "highs",
        "--solver",
        help="highs | dual | auto (HiGHS up to allocator.AUTO_THRESHOLD pairs, the dual solver above).",
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the RESULT .npz here."),
    gamma: float = typer.Option(1e-3, "--gamma", help="Dual solver: ridge weight relative to max|reward|."),
    tol: float = typer.Option(1e-4, "--tol", help="Dual solver: relative gap and violation to stop at."),
    elastic: bool = typer.Option(
        False,
        "--elastic",
        help="Let budgets and provider minimums give way at a penalty instead of failing on an infeasible LP.",
    ),
    device: str = typer.Option("cpu", "--device", help="Dual solver: cpu | cuda."),
    method: str = typer.Option("ipm", "--method", help="HiGHS: ipm | simplex | pdlp | choose."),
    float32: bool = typer.Option(False, "--float32", help="Dual solver: compute in float32."),
) -> None:
    """Solve PROBLEM.npz and print objective, status, violations and duals."""
    import allocator
    from allocator.result import save_result

    if solver not in ("auto", *allocator.solver_names()):
        fail(ValueError(f"--solver must be auto or one of {', '.join(allocator.solver_names())}, not {solver!r}"))
    try:
        prob = allocator.load_problem(problem)
        if solver == "auto":
            solver = allocator.auto_solver(prob.n_pairs)
        if solver == "highs":
            res = allocator.solve(prob, "highs", method=method, elastic=elastic)
        elif solver == "dual":
            import torch

            res = allocator.solve(
                prob,
                "dual",
                gamma=gamma,
                tol=tol,
                elastic=elastic,
                device=device,
                dtype=torch.float32 if float32 else torch.float64,
            )
        else:  # a solver registered with allocator.register
            res = allocator.solve(prob, solver, elastic=elastic)
        if out is not None:
            save_result(res, out)
    except (BanditLPError, FileNotFoundError) as exc:
        fail(exc)
        return
    table = Table(
        title=f"{problem.name}: {prob.n_pairs:,} pairs, {prob.n_users:,} users, "
        f"{prob.n_budgets} budgets, {prob.n_providers} providers"
    )
    table.add_column("field")
    table.add_column("value", justify="right")
    rows = [
        ("solver", res.solver),
        ("status", res.status),
        ("objective", f"{res.objective:.10g}"),
        ("max violation (abs)", f"{res.max_violation:.3g}"),
        ("max violation (rel)", f"{res.max_relative_violation:.3g}"),
        ("iterations", str(res.iterations)),
        ("seconds", f"{res.seconds:.3f}"),
    ]
    if res.x_unrepaired is not None:
        rows += [
            ("rel. violation before repair", f"{res.max_violation_before_repair:.3g}"),
            ("duality gap (rel)", f"{res.duality_gap:.3g}"),
        ]
    rows += [(f"budget_dual[{b}]", f"{v:.6g}") for b, v in enumerate(res.budget_dual)]
    nz = int((abs(res.provider_dual) > 1e-12).sum())
    rows.append(("provider duals != 0", f"{nz} of {prob.n_providers} (>0: max binds, <0: min binds)"))
    for name, val in rows:
        table.add_row(name, val)
    console.print(table)
    for v in res.violations[:10]:
        console.print(f"  violated {v.kind}[{v.index}] by {v.amount:.6g} ({v.relative:.3g} relative)")
    if out is not None:
        console.print(f"result written to {out}")


@lp_app.command("generate")
def generate_cmd(
    out: Path = typer.Argument(..., help="Problem .npz to write."),
    users: int = typer.Option(1000, "--users", help="Number of users."),
    candidates: str = typer.Option("10", "--candidates", help="Candidates per user: N or LO-HI (ragged)."),
    providers: int = typer.Option(50, "--providers"),
    budgets: int = typer.Option(2, "--budgets"),
    cap: str = typer.Option("1-2", "--cap", help="User cap: N or LO-HI."),
    tightness: float = typer.Option(0.7, "--tightness", help="Budgets as a fraction of the unconstrained use."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a random, feasible instance whose budgets and provider bounds bind."""
    from allocator.instances import random_instance
    from allocator.problem import save_problem

    def spec(text: str, flag: str):
        try:
            parts = [int(p) for p in text.split("-")]
        except ValueError:
            fail(ValueError(f"{flag}: expected N or LO-HI, got {text!r}"))
        return parts[0] if len(parts) == 1 else (parts[0], parts[1])

    try:
        prob = random_instance(
            users, spec(candidates, "--candidates"), providers, budgets, spec(cap, "--cap"), tightness, seed
        )
        save_problem(prob, out)
    except (BanditLPError, ValueError) as exc:
        fail(exc)
        return
    console.print(
        f"wrote {out}: {prob.n_pairs:,} pairs, {prob.n_users:,} users, {prob.n_providers} providers, "
        f"{prob.n_budgets} budgets"
    )
