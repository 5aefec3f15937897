"""Thread counts from free cores, and the OpenMP spin cap set at import."""

import os
import subprocess
import sys

import pytest
import torch

import grok_interp as g
from grok_interp import threads
from grok_interp.errors import GrokInterpError

pytestmark = pytest.mark.portable


@pytest.mark.parametrize(
    "cores, busy, want",
    [(2, 0.0, 2), (2, 0.2, 2), (2, 0.5, 1), (2, 1.0, 1), (2, 1.9, 1), (2, 5.0, 1), (8, 2.2, 6), (8, 2.4, 5), (1, 0.0, 1)],
)
def test_auto_threads_leaves_the_busy_cores(cores, busy, want):
    assert threads.auto_threads(cores=cores, busy=busy) == want


def test_busy_cores_sees_a_busy_process():
    """A spinning child process keeps about one core busy; the measurement says so."""
    idle = threads.busy_cores(sample_s=0.3)
    if idle > (os.cpu_count() or 1) - 1:
        pytest.skip(f"the machine is busy ({idle:.1f} cores): no free core to watch a new process take")
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 5: pass"])
    try:
        busy = threads.busy_cores(sample_s=0.5)
    finally:
        child.kill()
        child.wait()
    assert 0.0 <= idle <= (os.cpu_count() or 1)
    assert busy >= idle + 0.6


def test_resolve_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.resolve_threads(3) == 3
    assert threads.resolve_threads(None) is None
    monkeypatch.setattr(threads, "auto_threads", lambda: 7)
    assert threads.resolve_threads("auto") == 7
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.resolve_threads("auto") is None  # the user's OMP_NUM_THREADS wins
    for bad in (0, -1, "two", 1.5):
        with pytest.raises(GrokInterpError, match="threads"):
            threads.resolve_threads(bad)


@pytest.mark.parametrize("value, want", [("1", 1), ("3", 3), ("2,1", 2), (" 4 ", 4), ("0", None), ("-2", None),
                                         ("many", None), ("", None)])
def test_env_threads_reads_omp_num_threads(value, want):
    assert threads.env_threads({"OMP_NUM_THREADS": value}) == want
    assert threads.env_threads({}) is None


@pytest.mark.parametrize("cores, workers, env, want", [
    (4, 2, {}, 2), (5, 2, {}, 2), (1, 3, {}, 1),  # an equal share, at least one
    (4, 2, {"OMP_NUM_THREADS": "1"}, 1),          # the user's cap wins over the share
    (4, 2, {"OMP_NUM_THREADS": "8"}, 2),          # but never raises it past the free cores
])
def test_worker_threads_shares_the_cores_under_the_users_cap(cores, workers, env, want):
    assert threads.worker_threads(cores, workers, environ=env) == want


def test_using_threads_restores_the_count():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with threads.using_threads(other) as n:
        assert n == other == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with threads.using_threads(None) as n:
        assert n == before


def test_train_hooked_trains_with_the_threads_asked_and_restores(monkeypatch):
    seen = []
    monkeypatch.setattr(g.runs, "train_loop", lambda *a, **k: seen.append(torch.get_num_threads()) or
                        (_ for _ in ()).throw(KeyboardInterrupt))
    before = torch.get_num_threads()
    with pytest.raises(KeyboardInterrupt):
        g.train_hooked(p=5, steps=2, d_model=8, n_heads=2, d_mlp=8, progress=False, threads=1)
    assert seen == [1] and torch.get_num_threads() == before


def test_spin_cap_is_set_only_when_nobody_chose(monkeypatch):
    env: dict[str, str] = {}
    assert threads.default_spin_count(env, modules={}) and env == {"GOMP_SPINCOUNT": str(threads.SPIN_COUNT)}
    for given in ({"GOMP_SPINCOUNT": "0"}, {"OMP_WAIT_POLICY": "ACTIVE"}):
        env = dict(given)
        assert not threads.default_spin_count(env, modules={}) and env == given
    env = {}
    assert not threads.default_spin_count(env, modules={"torch": object()}) and env == {}


def test_import_sets_the_spin_cap_before_torch_loads():
    code = "import os, grok_interp; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(threads.SPIN_COUNT)
    code = "import os, torch, grok_interp; print(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"  # too late to matter: left alone
