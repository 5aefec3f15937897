"""The batch-split full-batch step: same bits whatever the number of workers, the
one-part step's results within rounding, and the slices it cuts."""

import pytest
import torch

import grok_interp as g
from grok_interp import threads
from grok_interp.training import loop

from ..helpers import small_run

pytestmark = pytest.mark.portable


@pytest.mark.parametrize("n, parts", [(10, 3), (7, 7), (3, 5), (3830, 2), (1, 1)])
def test_slices_cover_the_batch_once_in_order(n, parts):
    sl = loop.batch_slices(n, parts)
    assert len(sl) == min(parts, n) and all(s.stop > s.start for s in sl)
    assert [i for s in sl for i in range(s.start, s.stop)] == list(range(n))
    sizes = [s.stop - s.start for s in sl]
    assert max(sizes) - min(sizes) <= 1


def _run(monkeypatch, parts, workers):
    monkeypatch.setattr(threads, "usable_cores", lambda: parts)
    return small_run(steps=40, threads=workers)


def test_the_bits_do_not_depend_on_the_workers(monkeypatch):
    a = _run(monkeypatch, parts=3, workers=1)
    b = _run(monkeypatch, parts=3, workers=3)
    assert a.history.equals(b.history)
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), k


def test_split_step_equals_the_whole_batch_step_within_rounding(monkeypatch):
    whole = _run(monkeypatch, parts=1, workers=1)
    split = _run(monkeypatch, parts=4, workers=2)
    for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
        torch.testing.assert_close(torch.tensor(split.history[col].values), torch.tensor(whole.history[col].values),
                                   rtol=1e-4, atol=1e-5, msg=col)
    ws = g.models.weights(split.model)
    for k, x in g.models.weights(whole.model).items():
        if k.endswith("b_K"):  # its true gradient is 0: Adam turns rounding noise into full-size steps
            continue
        torch.testing.assert_close(ws[k], x, rtol=1e-4, atol=1e-5, msg=k)


def test_split_gradients_equal_one_backward():
    """One step's summed part gradients against a plain backward of the whole batch."""
    run = small_run(steps=1)
    prepared = g.runs.prepare_run(run.config, forward=g.training.forwards.fast_forward)
    state = prepared.run_state()
    params = [p for grp in state.optimizer.param_groups for p in grp["params"]]
    _, loss, grads = loop.FullBatchStep(parts=3, workers=2).forward([state])[0]
    state.optimizer.zero_grad(set_to_none=True)
    ctx = state.context
    whole = loop.loss_fn(ctx.forward(state.model, ctx.train_tokens), ctx.train_labels, ctx.loss)
    whole.backward()
    torch.testing.assert_close(loss, whole.detach(), rtol=1e-6, atol=1e-9)
    for p, gsplit in zip(params, grads):
        torch.testing.assert_close(gsplit, p.grad, rtol=1e-4, atol=1e-6)


def test_a_resumed_split_run_equals_the_uninterrupted_one(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    full = small_run(steps=40, out=tmp_path / "a", threads=2)
    small_run(steps=20, out=tmp_path / "b", threads=1)
    resumed = g.train_hooked(out=tmp_path / "b", resume=True, steps=40, progress=False, threads=2)
    assert full.history.equals(resumed.history)


def test_batch_parts_one_is_the_whole_batch_step_on_any_machine(monkeypatch):
    """``batch_parts=1`` on a 3-core machine trains the bits a 1-core machine trains."""
    one_core = _run(monkeypatch, parts=1, workers=1)
    monkeypatch.setattr(threads, "usable_cores", lambda: 3)
    whole = small_run(steps=40, threads=1, batch_parts=1)
    assert whole.history.equals(one_core.history)
    for (k, x), y in zip(whole.model.state_dict().items(), one_core.model.state_dict().values()):
        assert torch.equal(x, y), k


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_bad_batch_parts_is_refused_before_anything_is_written(tmp_path, bad):
    with pytest.raises(Exception, match="batch_parts"):
        small_run(steps=5, out=tmp_path / "r", batch_parts=bad)
    assert not (tmp_path / "r").exists()


def _sweep_one_worker(tmp_path, configs, torch_threads):
    """``g.sweep`` in this process (one worker, which gives each run torch's thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        table = g.sweep(configs, out=tmp_path / f"t{torch_threads}", max_workers=1, progress=False, cache=False)
    finally:
        torch.set_num_threads(before)
    assert (table["status"] == "done").all(), table[["run", "status", "error"]]
    return [g.load_run(path) for path in table["path"]]


def test_a_sweep_run_given_one_thread_computes_its_batch_whole(tmp_path, monkeypatch):
    """A sweep worker with one thread trains the ``batch_parts=1`` bits; with more
    threads, the machine's parts (the bits of ``train_hooked``'s default)."""
    from ..helpers import SMALL_MODEL

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    opts = dict(p=23, steps=30, eval_every=10, checkpoint_every=20, **SMALL_MODEL)
    for t, parts in ((1, 1), (2, None)):
        (run,) = _sweep_one_worker(tmp_path, [opts], t)
        want = g.train_hooked(progress=False, threads=t, batch_parts=parts, **opts)
        assert run.history.equals(want.history), t


def test_a_sweep_unit_too_large_to_batch_also_computes_its_batch_whole(tmp_path, monkeypatch):
    """Compatible runs that ``train_many`` trains one by one (a batch of one on CPU)
    get the worker's one thread and ``batch_parts=1`` too, not ``train_hooked``'s
    defaults (which would cut the batch for the machine's cores)."""
    from grok_interp import many_runs
    from ..helpers import SMALL_MODEL

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(many_runs, "auto_batch_size", lambda key: 1)
    opts = dict(p=23, steps=30, eval_every=10, checkpoint_every=20, **SMALL_MODEL)
    runs = _sweep_one_worker(tmp_path, [{**opts, "seed": s} for s in (0, 1)], 1)
    for s, run in zip((0, 1), runs):
        want = g.train_hooked(progress=False, threads=1, batch_parts=1, seed=s, **opts)
        assert run.history.equals(want.history), s
