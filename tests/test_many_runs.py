"""Many runs in one batch: each run equals train_hooked alone, within float rounding."""

import pytest
import torch

import grok_interp as g
from grok_interp.many_runs import auto_batch_size, batch_groups, batch_key, train_many
from grok_interp.training import checkpoint_schedule

from .helpers import SMALL_MODEL

pytestmark = pytest.mark.portable

BASE = dict(p=23, steps=60, eval_every=10, checkpoint_every=20, **SMALL_MODEL)

# Same shapes, everything else different: seeds, split seed, weight decay, lr, betas,
# warm-up, loss, frozen parts, operation, cadence and length.
VARIANTS = [
    {},
    {"seed": 1, "data_seed": 3, "weight_decay": 0.1, "device": "auto"},
    {"seed": 2, "lr": 3e-3, "betas": (0.8, 0.95), "warmup_steps": 0, "steps": 35},
    {"op": "subtract", "loss": "mse", "freeze_biases": True, "eval_every": 7, "checkpoint_every": 9},
    {"seed": 4, "init": "tl", "embed_init": "circulant", "grok_threshold": 0.05, "stop_after_grok": 12},
]


def _assert_same_run(a, b, checkpoints=True):
    assert a.history["step"].tolist() == b.history["step"].tolist()
    for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert torch.allclose(
            torch.tensor(a.history[col].to_numpy()), torch.tensor(b.history[col].to_numpy()), rtol=1e-4, atol=1e-5
        ), col
    assert a.checkpoint_steps == b.checkpoint_steps or not checkpoints
    wa, wb = g.models.weights(a.model), g.models.weights(b.model)
    # b_K's gradient is zero in exact arithmetic (it shifts all of a query's scores
    # equally), so AdamW steps it by normalised rounding noise in any implementation.
    for name in set(wa) - {"blocks.0.attn.b_K"}:
        assert torch.allclose(wa[name], wb[name], rtol=1e-4, atol=1e-5), name


def test_batch_equals_runs_one_by_one():
    specs = [{**BASE, **v} for v in VARIANTS]
    assert batch_groups(specs) == [[0, 1, 2, 3, 4]]  # one batch: the batched path is what is tested
    many = train_many(specs, progress=False)
    for spec, run in zip(specs, many):
        _assert_same_run(run, g.train_hooked(progress=False, **spec))
    assert many[2].history["step"].iloc[-1] == 35 and many[0].history["step"].iloc[-1] == 60
    # Runs are independent: the other runs' hyper-parameters did not leak in.
    assert not torch.allclose(g.models.weights(many[0].model)["unembed.W_U"], g.models.weights(many[1].model)["unembed.W_U"])


def test_run_configs_callbacks_and_run_directories(tmp_path):
    seen = []

    def probe(step, model, ctx):
        seen.append((step, id(model)))
        return {"w_u_norm": model.W_U.detach().norm().item()}

    # Dense rows: extended below, an adaptive run would also keep its old last row
    # (tests/training/test_adaptive_eval.py), which the straight run may not have.
    configs = [g.RunConfig.from_kwargs(**{**BASE, "steps": 30, "seed": s, "eval_sparse": 1}) for s in (0, 1)]
    outs = [tmp_path / "a", tmp_path / "b"]
    runs = train_many(configs, outs=outs, callbacks=[probe], progress=False)
    for run in runs:
        assert run.history["w_u_norm"].iloc[-1] == pytest.approx(run.model.W_U.detach().norm().item())
        loaded = g.load_run(run.path)
        assert loaded.history.equals(run.history.astype(loaded.history.dtypes.to_dict()))
        assert loaded.checkpoint_steps == checkpoint_schedule(30, 20)
        for name, w in g.models.weights(loaded.model).items():
            assert torch.equal(w, g.models.weights(run.model)[name].detach())
    assert {m for _, m in seen} == {id(r.model) for r in runs}

    # Resume both with a longer budget: equal to training 60 steps in one go.
    longer = [g.RunConfig.from_kwargs(**{**BASE, "steps": 60, "seed": s, "eval_sparse": 1}) for s in (0, 1)]
    resumed = train_many(longer, outs=outs, resume=True, progress=False)
    straight = train_many(longer, progress=False)
    for a, b in zip(resumed, straight):
        assert a.history["w_u_norm"].notna().sum() == 4  # rows 0..30 came from the first call
        assert a.checkpoint_steps == sorted(set(checkpoint_schedule(30, 20)) | set(b.checkpoint_steps))
        _assert_same_run(a, b, checkpoints=False)


def test_incompatible_runs_are_grouped_or_trained_alone():
    specs = [
        {**BASE},
        {**BASE, "n_layers": 2},  # another layer count: alone, through train_hooked
        {**BASE, "seed": 3},
        {**BASE, "d_mlp": 32},  # another shape: its own group
        {**BASE, "forward": "hooked"},
        {**BASE, "seed": 5},
    ]
    assert batch_groups(specs) == [[0, 2, 5], [1], [3], [4]]
    assert batch_groups(specs, max_batch=2) == [[0, 2], [1], [3], [4], [5]]
    runs = train_many([{**s, "steps": 10} for s in specs[:2]], progress=False)
    assert [r.config.model.n_layers for r in runs] == [1, 2]
    assert runs[1].history["step"].tolist() == [0, 10]


def test_cpu_batches_stay_cache_sized_gpu_batches_do_not():
    big = [{"p": 97, "seed": s} for s in range(3)]  # 2822 pairs x 512 floats each: too big for a CPU batch
    assert batch_groups(big) == [[0], [1], [2]]
    assert batch_groups(big, max_batch=8) == [[0, 1, 2]]
    key = batch_key(g.RunConfig.from_kwargs(p=97))
    assert auto_batch_size(key) == 1
    assert auto_batch_size(key[:9] + ("cuda:0",)) is None
    small = batch_key(g.RunConfig.from_kwargs(p=31))  # 288 pairs: 0.6 MB of activations per run
    assert auto_batch_size(small) == (4 * 2**20) // (4 * 288 * 512) == 7


def test_a_failed_write_in_a_batch_releases_every_runs_lock(tmp_path, monkeypatch):
    import errno

    real = g.runs.PreparedRun.close

    def close(self):  # the write in flight for run a failed on a full disk: its error surfaces at close
        real(self)
        if self.out_path.name == "a":
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(g.runs.PreparedRun, "close", close)
    configs = [g.RunConfig.from_kwargs(**{**BASE, "steps": 40, "seed": s}) for s in (0, 1, 2)]
    outs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    with pytest.raises(OSError, match="No space") as failure:
        train_many(configs, outs=outs, progress=False)
    monkeypatch.undo()
    # while the error is still held (a sweep retries the runs one by one inside its
    # except block), every lock is free: each run resumes on its own, in this process
    for out in outs:
        with g.store.RunStore(out).lock():
            pass
    assert failure.value.errno == errno.ENOSPC
