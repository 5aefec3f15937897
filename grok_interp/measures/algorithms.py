"""Clock or pizza: which algorithm a modular-addition model found (Zhong et al. 2023,
"The Clock and the Pizza: Two Stories in Mechanistic Explanation of Neural Networks").

Both algorithms embed ``a`` and ``b`` on circles ``E_a = (cos w a, sin w a)``. The
*clock* multiplies them (angle addition, ``cos w(a + b)`` from products of the two
embeddings: attention does the multiplication); the *pizza* adds the embeddings first,
``E_a + E_b``, whose length ``|cos(w (a - b) / 2)|`` depends on the difference. Two
measures tell them apart, as defined in the paper's code (fjzzq2002/pizza,
``code/eval-main.ipynb``):

* :func:`gradient_symmetricity`: for sampled triples ``(a, b, c)``, the cosine similarity
  of ``d logit_c / d E_a`` and ``d logit_c / d E_b`` (gradients with respect to the two
  input token embeddings, before the positional embedding), averaged. A function of
  ``E_a + E_b`` has equal gradients (pizza: near 1); the clock's product does not.
  The paper samples 100 triples from a list of all ``p^3`` shuffled with
  ``random.Random(42)``; so does the default here.
* :func:`distance_irrelevance`: with ``Q[s, d]`` the correct logit of the pair with
  ``a + b = s`` and ``a - b = d`` (mod p), ``q = mean_d std_s Q[s, d] / std Q`` (population
  standard deviations). The clock's correct logit does not depend on ``a - b``: ``q``
  near 1; the pizza's does: ``q`` small.

:func:`classify_algorithm` names the algorithm from the two numbers; thresholds are
stated there. :func:`set_attention_rate` gives a transformer the paper's attention
rate ``alpha``: ``pattern <- alpha * softmax + (1 - alpha)`` (the paper's
``attn_coeff``; rate 0 is constant attention, the paper's pizza-prone model B, rate 1
ordinary attention, model A).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._validate import bad_value, check_float, check_int
from ..tasks import Task
from ._probe import Probe, as_task, probe_of

__all__ = ["gradient_symmetricity", "distance_irrelevance", "distance_irrelevance_of", "DISTANCE_LOGITS", "classify_algorithm", "set_attention_rate"]


def _add_task(task: Task, what: str) -> None:
    """Refuse anything but modular addition: ``op="add"``, or the group task of ``C_p``."""
    group = getattr(task, "group", None)
    if not (group.is_cyclic_standard if group is not None else task.op == "add"):
        raise bad_value("task", task.op_name, f"{what} is defined for modular addition (op='add' or C_p)")


def gradient_symmetricity(model: nn.Module, task: Task | int, *, n_samples: int = 100, seed: int = 42) -> float:
    """Mean cosine similarity of ``d logit_c / d E_a`` and ``d logit_c / d E_b`` over
    ``n_samples`` triples (Zhong et al. 2023); ``E`` the token embeddings (``hook_embed``)."""
    task = as_task(task, model)
    _add_task(task, "gradient_symmetricity")
    check_int("n_samples", n_samples, low=1)
    if not callable(getattr(model, "run_with_hooks", None)):
        raise bad_value("model", type(model).__name__, "must be a hooked transformer (it reads hook_embed)")
    p = task.p
    triples = [(a, b, c) for a in range(p) for b in range(p) for c in range(p)]
    random.Random(seed).shuffle(triples)
    abc = torch.tensor(triples[:n_samples])
    device = next(model.parameters()).device
    tokens = task.tokens(abc[:, :2]).to(device)
    leaf: dict[str, Tensor] = {}

    def grab(act: Tensor, hook: Any) -> Tensor:
        leaf["e"] = act.detach().requires_grad_(True)
        return leaf["e"]

    hooked: Any = model  # a HookedTransformer (checked above)
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = hooked.run_with_hooks(tokens, fwd_hooks=[("hook_embed", grab)])[:, -1]
            out = logits[torch.arange(len(abc), device=device), abc[:, 2].to(device)].sum()
            (grad,) = torch.autograd.grad(out, leaf["e"])
    finally:
        model.train(was)
    ga, gb = grad[:, 0].double(), grad[:, 1].double()
    cos = (ga * gb).sum(-1) / (ga.norm(dim=-1) * gb.norm(dim=-1)).clamp_min(1e-300)
    return float(cos.mean())


@torch.no_grad()
def distance_irrelevance(model: nn.Module | Probe, task: Task | int, *, logit: str = "correct") -> float:
    """``q = mean_d std_s Q[s, d] / std Q`` over the logits ``Q`` of all pairs,
    ``s = a + b``, ``d = a - b`` (mod p) (Zhong et al. 2023); ``logit`` chooses which
    logit of each pair ``Q`` holds, see :func:`distance_irrelevance_of`."""
    task = as_task(task, model.model if isinstance(model, Probe) else model)
    _add_task(task, "distance_irrelevance")
    return distance_irrelevance_of(probe_of(model, task).logits(), task.p, logit=logit)


#: Which logit of each pair distance irrelevance reads: the two codes of Zhong et al. differ.
DISTANCE_LOGITS = ("correct", "runner_up")


def distance_logit_grid(logits: Tensor, p: int, *, logit: str = "correct") -> np.ndarray:
    """The ``(p, p)`` grid ``Q[(a + b) % p, (a - b) % p]`` of one logit per pair, from the
    ``(p*p, p)`` logits of the addition grid (rows ``a * p + b``): the heat map Zhong et
    al. plot, and what :func:`distance_irrelevance_of` reads. ``logit`` is ``"correct"``
    (the answer's logit) or ``"runner_up"`` (the largest wrong logit); see there."""
    check_int("p", p, low=2)
    if logit not in DISTANCE_LOGITS:
        raise bad_value("logit", logit, f"must be one of {', '.join(DISTANCE_LOGITS)}")
    L = torch.as_tensor(logits).double().cpu()
    if L.shape != (p * p, p):
        raise bad_value("logits", tuple(L.shape), f"must have shape ({p * p}, {p})")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    rows = torch.arange(p * p)
    if logit == "correct":
        value = L[rows, (a + b) % p]
    else:
        wrong = L.clone()
        wrong[rows, (a + b) % p] = float("-inf")
        value = wrong.max(dim=-1).values
    Q = np.zeros((p, p))
    Q[((a + b) % p).numpy(), ((a - b) % p).numpy()] = value.numpy()
    return Q


def distance_irrelevance_of(logits: Tensor, p: int, *, logit: str = "correct") -> float:
    """Distance irrelevance of the ``(p*p, p)`` logits of the addition grid (rows
    ``a * p + b``): with ``Q`` the grid of :func:`distance_logit_grid`,
    ``q = mean over d of std_s Q[s, d]``, divided by the standard deviation of all of ``Q``
    (population standard deviations).

    ``logit="correct"``: the correct answer's logit, as ``code/eval-main.ipynb`` (cell
    "Correct Logits") computes it for the paper's heat maps. ``logit="runner_up"``: the
    largest logit among the wrong answers, which is what ``code/train-main.py`` stores as
    ``distance_irrelevancy`` (it fills ``oc`` with the top wrong logit and computes ``dd``
    from ``oo = np.array(oc)``); the published tables ``result/1l_*.csv`` and the paper's
    phase plots come from that code. The two can differ a lot on one model: read the one
    you compare with.
    """
    Q = distance_logit_grid(logits, p, logit=logit)
    total = Q.std()
    return float(np.mean(Q.std(axis=0)) / total) if total > 0 else float("nan")


def classify_algorithm(model: nn.Module, task: Task | int, *, irrelevance_threshold: float = 0.5,
                       symmetricity_threshold: float = 0.9, n_samples: int = 100, seed: int = 42,
                       logit: str = "correct") -> dict[str, Any]:
    """Clock, pizza or unclear, from the two measures of Zhong et al. (2023).

    ``pizza`` when ``distance_irrelevance < irrelevance_threshold`` and
    ``gradient_symmetricity >= symmetricity_threshold``; ``clock`` when
    ``distance_irrelevance >= irrelevance_threshold`` and ``gradient_symmetricity <
    symmetricity_threshold``; else ``unclear``. ``logit`` picks the distance irrelevance
    (:func:`distance_irrelevance_of`: the correct logit, as the paper's eval notebook,
    or the runner-up logit, as its training script and published tables).

    The paper plots the two quantities and fixes no cut-offs; 0.5 and 0.9 are ours, set
    against the paper's own table of one-layer runs (fjzzq2002/pizza
    ``result/1l_fixedwidth.csv``, the main setting: no ``diff_vocab``, no ``eqn_sign``).
    Of its 226 runs at attention rate >= 0.9 every one is ``clock`` by these cut-offs
    (median symmetricity 0.48, irrelevance 0.85); of its 241 runs at rate <= 0.1 every
    one has symmetricity >= 0.9 and 63% also irrelevance < 0.5 (``pizza``); the other
    37% keep irrelevance >= 0.5 and come out ``unclear``. So
    symmetricity tells the two regimes apart on its own; irrelevance tells the pizza
    whose correct logit depends on ``a - b`` from one that compensates it. (In the
    table's ``eqn_sign`` runs, whose input ``a b =`` is this library's, the rate >= 0.9
    runs have median symmetricity 0.96; no script in the repository computes the
    table's symmetricity, and its notebook feeds ``a b`` only, so how those values were
    measured is not known. This library's rate-1 models give 0.15-0.54.) On this
    library's models at the paper's setup (``examples/clock_pizza.py``: p = 59,
    d_model 128, weight decay 2, 2000 steps, 3 seeds; ``results/clock_pizza/``) rate 0
    gives ``pizza`` and rate 1 ``clock`` in every seed. Runs that are small and short
    (p = 13-17, d_model 64, weight decay 1, a few hundred steps) give symmetricity 1 but
    irrelevance near 0.8 at rate 0: ``unclear``. Read the numbers, not only the label,
    and measure a model that has generalised: on a memorising model both are noise.

    Returns:
        ``{"gradient_symmetricity", "distance_irrelevance", "algorithm"}``.
    """
    check_float("irrelevance_threshold", irrelevance_threshold, low=0.0, high=1.0)
    check_float("symmetricity_threshold", symmetricity_threshold, low=-1.0, high=1.0)
    sym = gradient_symmetricity(model, task, n_samples=n_samples, seed=seed)
    q = distance_irrelevance(model, task, logit=logit)
    if q < irrelevance_threshold and sym >= symmetricity_threshold:
        algo = "pizza"
    elif q >= irrelevance_threshold and sym < symmetricity_threshold:
        algo = "clock"
    else:
        algo = "unclear"
    return {"gradient_symmetricity": sym, "distance_irrelevance": q, "algorithm": algo}


def set_attention_rate(model: nn.Module, rate: float) -> nn.Module:
    """Give every attention layer the paper's attention rate: ``pattern <- rate * pattern +
    (1 - rate)`` on the positions a query may see (a permanent TransformerLens hook on
    ``blocks.<l>.attn.hook_pattern``). Rate 1 leaves the model unchanged; rate 0 is
    constant attention (every visible position weighted 1, as the reference code's
    ``attn_coeff = 0``; at the last position, which the answer is read from, all
    positions are visible, exactly as there). The hook acts in the hooked forward only:
    train such a model with ``forward="hooked"`` semantics (its own ``model(tokens)``).
    """
    rate = check_float("rate", rate, low=0.0, high=1.0)
    if not callable(getattr(model, "add_hook", None)) or getattr(model, "cfg", None) is None:
        raise bad_value("model", type(model).__name__, "must be a hooked transformer")

    def hook(pattern: Tensor, hook: Any) -> Tensor:
        q, k = pattern.shape[-2], pattern.shape[-1]
        visible = torch.ones(q, k, device=pattern.device, dtype=pattern.dtype).tril(k - q)
        return rate * pattern + (1.0 - rate) * visible

    hooked: Any = model
    for layer in range(hooked.cfg.n_layers):
        hooked.add_hook(f"blocks.{layer}.attn.hook_pattern", hook, is_permanent=True)
    hooked.attention_rate = rate
    return model
