"""Euclidean projection onto the capped simplex ``{x : 0 <= x <= 1, sum x <= k}``, many rows at once.

The projection of ``v`` is ``x = clip(v - tau, 0, 1)`` with ``tau = 0`` when ``sum clip(v, 0, 1) <= k``
and otherwise the root ``tau > 0`` of ``f(tau) = sum clip(v - tau, 0, 1) = k``. ``f`` is piecewise
linear and decreasing, so a safeguarded Newton iteration — one-sided slope in the direction of the
step, bisection whenever the step leaves the bracket or the slope is 0 — is exact once it reaches
the right piece. Warm-started from the previous dual iteration's ``tau`` most rows are done after
one Newton step over all rows; only the rows not yet converged are carried into the next steps.
"""

from __future__ import annotations

import torch


def project_capped_simplex(
    v: torch.Tensor,
    k: torch.Tensor,
    tau0: torch.Tensor | None = None,
    *,
    out: torch.Tensor | None = None,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project every row of ``v`` onto ``{0 <= x <= 1, sum x <= k_row}``.

    Args:
        v: (n_rows, d) points to project (float32 or float64, any device).
        k: (n_rows,) caps ``>= 0``, same dtype/device as ``v``.
        tau0: (n_rows,) warm-start thresholds, or None (start at 0).
        out: (n_rows, d) buffer for the result (may not alias ``v``), or None.
        max_iter: Newton/bisection steps at most (bisection alone would need ~60 in float64).

    Returns:
        ``(x, tau)``: (n_rows, d) projections and (n_rows,) thresholds (0 where the cap is slack).
    """
    n, d = v.shape
    eps16d = torch.finfo(v.dtype).eps * 16 * max(d, 1)
    t = torch.zeros_like(k) if tau0 is None else tau0.clamp(min=0.0)
    # one Newton step on every row at once (interior slope): from a warm start whose active set
    # did not change it lands on the root, so the second pass below finds most rows done
    z = torch.sub(v, t[:, None], out=out)
    g = z.clamp(0.0, 1.0).sum(dim=1) - k
    m = ((z > 0) & (z < 1)).sum(dim=1)
    step = (m > 0) & ((g > 0) | (t > 0))
    t = torch.where(step, (t + g / m.clamp(min=1).to(g.dtype)).clamp(min=0.0), t)
    x = torch.sub(v, t[:, None], out=out).clamp_(0.0, 1.0)
    g = x.sum(dim=1) - k
    # f is evaluated with rounding error about eps * d * (1 + |tau|) on the pairs that matter
    done = (g.abs() <= eps16d * (1.0 + t)) | ((t == 0) & (g <= 0))
    if bool(done.all()):
        return x, t
    rows = (~done).nonzero().squeeze(1)
    vb, kb, t_r = v.index_select(0, rows), k.index_select(0, rows), t.index_select(0, rows)
    lo = torch.zeros_like(kb)
    hi = vb.amax(dim=1).clamp(min=0.0)  # f(hi) = 0 <= k
    t_r = torch.minimum(t_r, hi)
    live = torch.arange(rows.numel(), device=v.device)
    for _ in range(max_iter):
        vl, tl = vb.index_select(0, live), t_r.index_select(0, live)
        z = vl - tl[:, None]
        g = z.clamp(0.0, 1.0).sum(dim=1) - kb.index_select(0, live)
        fin = (g.abs() <= eps16d * (1.0 + tl)) | ((tl == 0) & (g <= 0))
        # one-sided slope in the direction of the step: exact Newton across breakpoints
        m = torch.where(g > 0, ((z > 0) & (z <= 1)).sum(dim=1), ((z >= 0) & (z < 1)).sum(dim=1))
        lol = torch.where(g > 0, tl, lo.index_select(0, live))
        hil = torch.where(g < 0, tl, hi.index_select(0, live))
        tn = tl + g / m.clamp(min=1).to(g.dtype)
        flat = m == 0
        if bool(flat.any()):
            # on a flat piece jump to the next breakpoint in the step's direction: left, the
            # largest v_i below tau (a pair starts to count); right, the smallest v_i - 1 above it
            inf = torch.full_like(vl, torch.inf)
            left = torch.where(vl < tl[:, None], vl, -inf).amax(dim=1)
            right = torch.where(vl - 1 > tl[:, None], vl - 1, inf).amin(dim=1)
            tn = torch.where(flat, torch.where(g < 0, left, right), tn)
        bisect = (tn <= lol) | (tn >= hil)
        # tau = 0 is a root whenever f(0) <= k: a step past 0 lands there, not in a bisection
        to_zero = (g < 0) & (lol == 0) & (tn <= 0)
        tn = torch.where(to_zero, torch.zeros_like(tn), torch.where(bisect, 0.5 * (lol + hil), tn))
        fin = fin | (tn == tl)  # no representable progress left
        t_r.index_copy_(0, live, torch.where(fin, tl, tn))
        lo.index_copy_(0, live, lol)
        hi.index_copy_(0, live, hil)
        live = live[~fin]
        if live.numel() == 0:
            break
    x.index_copy_(0, rows, (vb - t_r[:, None]).clamp_(0.0, 1.0))
    t = t.index_copy(0, rows, t_r)
    return x, t
