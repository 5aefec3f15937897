"""The local learning coefficient (LLC) of singular learning theory, estimated with
devinterp's SGLD sampler (optional: ``pip install grok_interp[devinterp]``).

Estimator (Lau et al. 2023, "Quantifying degeneracy in singular models via the learning
coefficient"; devinterp's ``compute_llc``): around the trained weights ``w*`` draw
``w_t`` by SGLD from the tempered, localised posterior::

    dw = (eps / 2) (-nbeta * grad L_m(w) + gamma (w* - w)) + N(0, eps)

(``L_m`` the cross-entropy of a minibatch of ``m`` training pairs; devinterp's
``SGMCMC.sgld`` with ``lr = eps``, ``nbeta``, ``localization = gamma``), and take

    llc = nbeta * (mean_t L(w_t) - L(w*))

per chain (``L(w*)`` the full training loss; the burn-in draws are left out, unlike
devinterp's ``compute_llc``, which averages them in), averaged over chains. Defaults:
``eps = 1e-4``, ``nbeta = 15`` (about ``m / ln m`` for the batch ``m = 64``, devinterp's
``default_nbeta``), ``gamma = 100``, 4 chains of 200 burn-in steps and 400 draws: on the
MLP baseline trained on S4 these gave a stable estimate where 100 draws without burn-in
(any of eps 3e-5 .. 3e-4) did not, and on a one-layer transformer of ``p = 13``,
``eps = 3e-3, nbeta = 2, gamma = 5`` kept climbing. Calibrate them for your runs with the
diagnostics, as devinterp's docs recommend:

* ``trace``: the minibatch loss of every draw of every chain (plot it: a chain that
  climbs without levelling off has ``eps`` too large or ``gamma`` too small; one that
  goes below ``L(w*)`` found a lower point, the estimate is not local);
* ``stable``: the estimate from the first and the second half of the draws agree within
  ``tolerance`` (relative), every draw is finite and the estimate is positive;
* ``chain_spread``: the standard deviation over chains divided by the mean.

Every estimate carries its sampler settings (:attr:`LLCResult.settings`), recorded with it.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._validate import bad_value, check_float, check_int
from ..protocols import as_task_split
from ..tasks import Split

__all__ = ["LLCSettings", "LLCResult", "estimate_llc", "llc_available", "llc_columns"]


def llc_available() -> bool:
    """True when devinterp is installed."""
    try:
        import devinterp.optim.sgmcmc  # type: ignore[import-untyped]  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class LLCSettings:
    """SGLD settings of one LLC estimate (saved beside it)."""

    lr: float = 1e-4
    nbeta: float = 15.0
    localization: float = 100.0
    num_chains: int = 4
    num_draws: int = 400
    num_burnin: int = 200
    batch_size: int = 64
    seed: int = 0
    tolerance: float = 0.2

    def __post_init__(self) -> None:
        check_float("lr", self.lr, low=0.0, low_open=True)
        check_float("nbeta", self.nbeta, low=0.0, low_open=True)
        check_float("localization", self.localization, low=0.0)
        check_int("num_chains", self.num_chains, low=1)
        check_int("num_draws", self.num_draws, low=2)
        check_int("num_burnin", self.num_burnin, low=0)
        check_int("batch_size", self.batch_size, low=1)
        check_int("seed", self.seed)
        check_float("tolerance", self.tolerance, low=0.0, low_open=True)


@dataclass
class LLCResult:
    """An LLC estimate with its diagnostics.

    Attributes:
        llc: Mean over chains. llc_std: standard deviation over chains.
        per_chain: One estimate per chain. init_loss: ``L(w*)`` (training pairs).
        trace: ``(num_chains, num_draws)`` minibatch losses of the draws.
        first_half, second_half: The estimate from each half of the draws.
        stable: See the module docstring. chain_spread: ``llc_std / |llc|``.
        settings: The sampler settings.
    """

    llc: float
    llc_std: float
    per_chain: list[float]
    init_loss: float
    trace: np.ndarray = field(repr=False)
    first_half: float
    second_half: float
    stable: bool
    chain_spread: float
    settings: LLCSettings

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trace"] = self.trace.tolist()
        return d

    def save(self, path: str | os.PathLike) -> Path:
        """Write the estimate, its trace and settings as JSON."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()))
        return path


def estimate_llc(model: nn.Module, data: Any, settings: LLCSettings | None = None, **options: Any) -> LLCResult:
    """Estimate the LLC of ``model`` at its current weights on the training pairs.

    Args:
        model: A hooked model (not changed: the chains run on copies).
        data: A :class:`~grok_interp.Split` or run (its training pairs are the data).
        settings: :class:`LLCSettings`; or give its fields as ``options``.

    Raises:
        GrokInterpError: devinterp is not installed, or bad settings.
    """
    if not llc_available():
        raise bad_value("measure", "llc", "needs devinterp: pip install 'grok_interp[devinterp]'")
    from devinterp.optim.sgmcmc import SGMCMC  # type: ignore[import-untyped]  # noqa: PLC0415 - optional

    if settings is None:
        settings = LLCSettings(**options)
    elif options:
        raise bad_value("options", sorted(options), "give settings= or its fields, not both")
    task, split = as_task_split(data, "data")
    if not isinstance(split, Split):
        raise bad_value("data", type(data).__name__, "must be a Split or a run: the LLC is taken on the training pairs")
    device = next(model.parameters()).device
    X = task.tokens(split.train_pairs).to(device)
    Y = task.answers(split.train_pairs).to(device)
    n = len(Y)

    def loss_of(m: nn.Module, idx: torch.Tensor | None = None) -> torch.Tensor:
        x, y = (X, Y) if idx is None else (X[idx], Y[idx])
        return F.cross_entropy(m(x)[:, -1].double(), y)

    with torch.no_grad():
        init_loss = float(loss_of(model))
    gen = torch.Generator().manual_seed(settings.seed)
    noise = torch.Generator(device=device).manual_seed(settings.seed + 1)
    with torch.enable_grad():  # also when called under no_grad (the measure recorders)
        trace = _sample(model, loss_of, settings, n, gen, noise, device, SGMCMC)
    per_chain = settings.nbeta * (trace.mean(1) - init_loss)
    half = settings.num_draws // 2
    first = float(settings.nbeta * (trace[:, :half].mean() - init_loss))
    second = float(settings.nbeta * (trace[:, half:].mean() - init_loss))
    llc = float(per_chain.mean())
    std = float(per_chain.std())
    finite = bool(np.isfinite(trace).all())
    stable = finite and llc > 0 and abs(first - second) <= settings.tolerance * abs(llc)
    return LLCResult(
        llc=llc, llc_std=std, per_chain=per_chain.tolist(), init_loss=init_loss, trace=trace, first_half=first,
        second_half=second, stable=stable, chain_spread=std / abs(llc) if llc else math.inf, settings=settings,
    )


def llc_columns(model: nn.Module, data: Any, settings: LLCSettings | None = None) -> dict[str, Any]:
    """The history columns of the ``llc`` measure: ``llc``, ``llc_std``, ``llc_stable``,
    ``llc_chain_spread`` and ``llc_settings`` (the sampler settings as JSON)."""
    r = estimate_llc(model, data, settings)
    return {"llc": r.llc, "llc_std": r.llc_std, "llc_stable": r.stable, "llc_chain_spread": r.chain_spread,
            "llc_settings": json.dumps(asdict(r.settings), sort_keys=True)}


def _sample(model: nn.Module, loss_of: Any, settings: LLCSettings, n: int, gen: torch.Generator,
            noise: torch.Generator, device: torch.device, SGMCMC: Any) -> np.ndarray:
    """``(num_chains, num_draws)`` minibatch losses of SGLD chains started at ``model``'s weights."""
    trace = np.zeros((settings.num_chains, settings.num_draws))
    for c in range(settings.num_chains):
        chain = copy.deepcopy(model)
        chain.train()
        opt = SGMCMC.sgld(chain.parameters(), lr=settings.lr, nbeta=settings.nbeta, localization=settings.localization)
        for t in range(settings.num_burnin + settings.num_draws):
            idx = torch.randint(n, (min(settings.batch_size, n),), generator=gen).to(device)
            opt.zero_grad()
            loss = loss_of(chain, idx)
            loss.backward()
            opt.step(noise_generator=noise)
            if t >= settings.num_burnin:
                trace[c, t - settings.num_burnin] = float(loss.detach())
        del chain, opt
    return trace
