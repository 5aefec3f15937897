"""The run store: a run directory cannot lose data or be fooled.

One test (or table of tests) per case of issue 11: kill -9 during each kind of write,
inconsistent resume states, two writers, a full disk, a read-only directory, hostile
pickles in each file slot, absurd sizes, missing/mistyped/unknown config keys, broken
histories, file modes, and the command line's one-line errors. Runs are tiny (p = 11,
40 steps); each kill is a child interpreter that SIGKILLs itself mid-write.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import grok_interp as g
from grok_interp import store
from grok_interp.cli import main

pytestmark = pytest.mark.portable

OPTS = dict(p=11, steps=40, eval_every=5, checkpoint_every=10, d_model=16, n_heads=2, d_mlp=32, progress=False)


def _same_weights(a, b):
    wa, wb = g.models.weights(a), g.models.weights(b)
    return set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)


def _digest(path: Path) -> dict[str, str]:
    """Every file's content hash (the lock file excluded): 'no good file changed'."""
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*")) if f.is_file() and f.name != store.LOCK
    }


@pytest.fixture(scope="module")
def straight():
    return g.train_hooked(**OPTS)


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "r"
    g.train_hooked(out=out, **OPTS)
    return out


# --- kill -9 during each kind of write ---------------------------------------------------
_DIE = """
import json, logging, os, signal, sys
victim, nth, out, opts = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
real, seen = os.replace, [0]

def replace(src, dst, *a, **k):
    if str(dst).endswith(victim):
        seen[0] += 1
        if seen[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *a, **k)

os.replace = replace
logging.disable(logging.CRITICAL)
import grok_interp as g
g.train_hooked(out=out, resume=True, **opts)
sys.exit(3)
"""


def _train_and_die(out: Path, victim: str, nth: int = 1, **opts) -> None:
    """A child process trains into ``out`` and SIGKILLs itself as it is about to rename
    its ``nth`` temporary file (or state directory) whose target ends with ``victim``.

    A new interpreter, not ``os.fork``: a forked child of a process whose OpenMP
    threads have run can deadlock in its first parallel region."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _DIE, victim, str(nth), str(out), json.dumps({**OPTS, **opts})],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"child was not killed at {victim}: {proc.returncode} {proc.stderr[-2000:]}"


@pytest.mark.parametrize(
    "victim, nth",
    [
        ("config.json", 1),                # the first file of a run
        ("data.safetensors", 1),
        ("step_0000020.safetensors", 1),   # a checkpoint
        ("optimizer.pt", 5),               # inside a resume state being filled
        ("state-0000020", 1),              # the resume state's directory rename
        ("history.csv", 8),                # the run's history
        ("model.safetensors", 12),         # the run's latest weights
        ("status.json", 16),               # the run's status
    ],
)
def test_kill_during_each_write_leaves_a_loadable_run_that_resumes_exactly(tmp_path, straight, victim, nth):
    out = tmp_path / "killed"
    _train_and_die(out, victim, nth)
    leftovers = [p.name for p in out.rglob(".*") if p.name != store.LOCK]
    assert leftovers, "the kill should leave the temporary file of the interrupted write"
    if (out / store.STATUS).exists():  # something was trained: what is there loads
        partial = g.load_run(out)
        assert partial.history["step"].is_monotonic_increasing
    resumed = g.train_hooked(out=out, resume=True, **OPTS)
    assert not [p for p in out.rglob(".*") if p.name != store.LOCK], "stale temporary files were not removed"
    assert resumed.history.equals(straight.history)
    assert _same_weights(resumed.model, straight.model)
    loaded = g.load_run(out)
    assert loaded.history.equals(straight.history) and _same_weights(loaded.model, straight.model)


# --- inconsistent resume states -------------------------------------------------------------
def _unfinish(out: Path) -> None:
    """Make ``out`` look interrupted after its last checkpoint (so resume continues it)."""
    status = json.loads((out / store.STATUS).read_text())
    (out / store.STATUS).write_text(json.dumps({**status, "finished": False}))


def _short_history(state: Path) -> None:
    h = pd.read_csv(state / store.HISTORY)
    h[h["step"].isin([0, 10, 20, h["step"].max()])].to_csv(state / store.HISTORY, index=False)


def _status_off_by(state: Path) -> None:
    (state / store.STATUS).write_text(json.dumps({"step": 10}))


@pytest.mark.parametrize("damage", [_short_history, _status_off_by], ids=["short-history", "status-disagrees"])
def test_an_inconsistent_state_is_skipped_for_the_newest_consistent_one(tmp_path, straight, caplog, damage):
    out = tmp_path / "r"
    g.train_hooked(out=out, **{**OPTS, "steps": 30})
    damage(out / "state-0000030")
    _unfinish(out)
    with caplog.at_level(logging.WARNING, logger="grok_interp.store"):
        resumed = g.train_hooked(out=out, resume=True, **OPTS)
    assert "state-0000030" in caplog.text
    assert resumed.history.equals(straight.history)
    assert _same_weights(resumed.model, straight.model)


@pytest.mark.parametrize("damage", [_short_history, _status_off_by], ids=["short-history", "status-disagrees"])
def test_no_consistent_state_is_refused_and_no_good_file_changes(run_dir, damage):
    for state in run_dir.glob("state-*"):
        damage(state)
    _unfinish(run_dir)
    before = _digest(run_dir)
    with pytest.raises(g.RunDirectoryError, match=r"state-00000(30|40)"):
        g.train_hooked(out=run_dir, resume=True, **{**OPTS, "steps": 60})
    assert _digest(run_dir) == before
    with pytest.raises(g.RunDirectoryError, match="state-0000040"):
        g.load_run(run_dir)  # an unfinished run is read from its states: refused too


def test_state_weights_must_match_their_checkpoint(run_dir):
    w = store.read_tensors(run_dir / "state-0000040" / store.MODEL)
    store.write_tensors(run_dir / "state-0000040" / store.MODEL, {k: v + 1 for k, v in w.items()})
    with pytest.raises(g.RunDirectoryError, match="differs from .*step_0000040"):
        store.RunStore(run_dir).validate_state(run_dir / "state-0000040", eval_every=5)


# --- one writer at a time --------------------------------------------------------------
def test_a_second_writer_gets_one_clear_error_naming_the_holder(run_dir, capsys):
    holder = store.RunStore(run_dir).lock()
    try:
        before = _digest(run_dir)
        with pytest.raises(g.RunDirectoryError, match=f"pid {os.getpid()}"):
            g.train_hooked(out=run_dir, resume=True, **{**OPTS, "steps": 50})
        assert main(["train", "--out", str(run_dir), "--resume", "--quiet", "--p", "11", "--steps", "50"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: run directory") and "another process" in err and "\n" not in err
        assert _digest(run_dir) == before
    finally:
        holder.close()
    g.train_hooked(out=run_dir, resume=True, **{**OPTS, "steps": 50})  # released: writable again


def test_a_killed_holder_releases_the_lock(run_dir):
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child holds the lock until killed
        held = store.RunStore(run_dir).lock()  # noqa: F841 - held until the process dies
        time.sleep(60)
        os._exit(0)
    try:
        deadline = time.time() + 30
        while (run_dir / store.LOCK).read_text().strip() != str(pid):
            assert time.time() < deadline
            time.sleep(0.01)
        with pytest.raises(g.RunDirectoryError, match=f"pid {pid}"):
            store.RunStore(run_dir).lock()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    store.RunStore(run_dir).lock().close()


@pytest.mark.slow
def test_two_writers_started_together_leave_one_consistent_run(tmp_path):
    out = tmp_path / "both"
    cmd = [sys.executable, "-m", "grok_interp.cli", "train", "--out", str(out), "--quiet", "--p", "11",
           "--steps", "200", "--d-model", "16", "--n-heads", "2", "--d-mlp", "32"]
    procs = [subprocess.Popen([*cmd, "--seed", str(s)], stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    loser = next(err for c, err in results if c == 2).strip().splitlines()[-1]
    assert loser.startswith("error: ") and ("another process" in loser or "already holds a run" in loser)
    run = g.load_run(out)
    winner_seed = run.config.model.seed
    fresh = g.models.build_model(run.config.model, run.task)
    assert _same_weights(fresh, run.model_at(0)), f"checkpoint 0 is not seed {winner_seed}'s"


# --- file modes ------------------------------------------------------------------------------
def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        g.train_hooked(out=tmp_path / "r", **{**OPTS, "steps": 10})
    finally:
        os.umask(old)
    for f in (tmp_path / "r").rglob("*"):
        mode = f.stat().st_mode & 0o777
        assert mode == (0o755 if f.is_dir() else 0o644), f"{f}: {oct(mode)}"


# --- full disk and read-only file systems ----------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_one_line_and_loses_nothing(tmpfs, straight, capsys):
    out = tmpfs / "r"
    g.train_hooked(out=out, **{**OPTS, "steps": 20})
    filler = tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last block
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    before = _digest(out)
    code = main(["train", "--out", str(out), "--resume", "--quiet", "--p", "11", "--steps", "40", "--eval-every", "5",
                 "--checkpoint-every", "10", "--d-model", "16", "--n-heads", "2", "--d-mlp", "32"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: No space left on device") and "\n" not in err
    assert not [p for p in out.rglob(".*") if p.name != store.LOCK], "a failed write left its temporary file"
    after = _digest(out)
    assert set(before) <= set(after)  # nothing lost; what a write replaced was replaced whole
    g.load_run(out)
    filler.unlink()
    resumed = g.train_hooked(out=out, resume=True, **OPTS)
    assert resumed.history.equals(straight.history) and _same_weights(resumed.model, straight.model)


def test_read_only_directory_is_one_line_and_still_loads(tmpfs, capsys):
    out = tmpfs / "r"
    g.train_hooked(out=out, **{**OPTS, "steps": 20})
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    loaded = g.load_run(out)  # reading needs no lock
    assert loaded.history["step"].max() == 20
    code = main(["train", "--out", str(out), "--resume", "--quiet", "--p", "11", "--steps", "40", "--eval-every", "5",
                 "--checkpoint-every", "10", "--d-model", "16", "--n-heads", "2", "--d-mlp", "32"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: Read-only file system") and "\n" not in err


@pytest.mark.slow
def test_permission_denied_is_one_line(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    out = tmp_path / "locked"
    out.mkdir(mode=0o555)
    tmp_path.chmod(0o755)
    code = (  # import first (the parser too: it imports its subcommands lazily; a model
        # build too: TransformerLens 4 imports its bridge's driver only then): the
        # unprivileged user may not read the interpreter's files or a checkout under /tmp
        "import os, sys, grok_interp.runs, grok_interp.cli; grok_interp.cli.build_parser(); "
        "from grok_interp import Task; from grok_interp.config import ModelConfig; "
        "from grok_interp.models import build_model; build_model(ModelConfig(), Task(11)); "
        "os.setgid(65534); os.setuid(65534); "
        f"sys.exit(grok_interp.cli.main(['train', '--out', {str(out / 'r')!r}, '--quiet', '--p', '11', '--steps', '2']))"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if "Permission denied" in proc.stderr and "Traceback" in proc.stderr and "grok_interp" not in proc.stderr:
        pytest.skip("the unprivileged user cannot read the interpreter or sources")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: Permission denied")


# --- hostile files -------------------------------------------------------------------------
MARKER = Path("/tmp/grok_interp_pwned")


class _Hostile:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def _plant(path: Path, torch_format: bool = False) -> None:
    if torch_format:
        torch.save({"state": _Hostile()}, path)
    else:
        path.write_bytes(pickle.dumps(_Hostile()))


@pytest.mark.parametrize(
    "slot", ["model.safetensors", "data.safetensors", "checkpoints/step_0000020.safetensors",
             "state-0000040/model.safetensors", "state-0000040/optimizer.pt"]
)
def test_a_hostile_pickle_in_any_slot_is_refused_and_never_run(run_dir, slot):
    MARKER.unlink(missing_ok=True)
    _plant(run_dir / slot, torch_format=slot.endswith(".pt"))
    for state in run_dir.glob("state-*"):  # every state hostile: nothing to fall back to
        if slot.startswith("state-"):
            _plant(state / Path(slot).name, torch_format=slot.endswith(".pt"))
    with pytest.raises(g.RunDirectoryError, match=Path(slot).name):
        if slot.startswith("checkpoints"):
            g.load_run(run_dir).weights_at(20)
        elif slot.startswith("state-"):
            g.train_hooked(out=run_dir, resume=True, **{**OPTS, "steps": 60})
        else:
            g.load_run(run_dir)
    assert not MARKER.exists()


def test_a_hostile_weights_path_is_one_line(tmp_path):
    from grok_interp.vision.resnet import build_resnet

    MARKER.unlink(missing_ok=True)
    for name in ("hostile.pt", "hostile.safetensors"):
        _plant(tmp_path / name, torch_format=True)
        with pytest.raises(g.RunDirectoryError, match=name):
            build_resnet(width=4, weights_path=tmp_path / name)
    assert not MARKER.exists()


# --- absurd sizes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("opts, name", [
    ({"p": 100003}, "p"), ({"d_mlp": 10**9}, "d_mlp"),
    ({"offset": 10**9}, "offset"),  # was blamed on p
    ({"steps": 10**12}, "steps"),  # built a 22 GB checkpoint schedule, then the OOM killer
])
def test_an_impossible_size_is_refused_before_allocating(opts, name):
    start = time.perf_counter()
    with pytest.raises(g.GrokInterpError, match=rf"^{name}=.* needs at least .*B .*memory is"):
        g.train_hooked(**{**OPTS, **opts})
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("section, key, value, victim", [
    ("data", "p", 100003, "data.safetensors"),
    ("model", "d_mlp", 10**9, "config.json.*d_mlp=1000000000.*needs at least"),
    ("model", "d_mlp", 48, "model.safetensors"),
])
def test_config_sizes_are_checked_against_the_files_before_allocating(run_dir, section, key, value, victim):
    raw = json.loads((run_dir / "config.json").read_text())
    raw[section][key] = value
    (run_dir / "config.json").write_text(json.dumps(raw))
    with pytest.raises(g.RunDirectoryError, match=victim):
        g.load_run(run_dir)


# --- config.json against its schema ---------------------------------------------------------
def _edit_config(run_dir: Path, edit) -> None:
    raw = json.loads((run_dir / "config.json").read_text())
    raw = edit(raw)
    (run_dir / "config.json").write_text(json.dumps(raw))


@pytest.mark.parametrize("edit, message", [
    (lambda r: {**r, "train": {k: v for k, v in r["train"].items() if k != "lr"}}, "'train.lr' is missing"),
    (lambda r: {**r, "train": {**r["train"], "lr": "0.003"}}, "train.lr='0.003' has the wrong type"),
    (lambda r: {**r, "model": {**r["model"], "d_model": 16.0}}, "model.d_model=16.0 has the wrong type"),
    (lambda r: {**r, "data": {**r["data"], "k": "3"}}, "data.k='3' has the wrong type"),
    (lambda r: {**r, "train": {**r["train"], "fancy": 1}}, r"unknown keys \['fancy'\]"),
    (lambda r: {**r, "extra": 1}, r"unknown keys \['extra'\]"),
    (lambda r: {k: v for k, v in r.items() if k != "data"}, r"keys \['data'\] are missing"),
    (lambda r: {**r, "grok_interp": {"format": 99}}, "format 99"),
    (lambda r: {**r, "train": {**r["train"], "lr": -1.0}}, "lr=-1.0 is invalid"),
    (lambda r: [1], "must hold a JSON dict, found list"),
    (lambda r: None, "must hold a JSON dict, found NoneType"),
])
def test_a_bad_config_is_one_error_naming_the_file(run_dir, edit, message):
    _edit_config(run_dir, edit)
    with pytest.raises(g.RunDirectoryError, match=message) as exc:
        g.load_run(run_dir)
    assert "config.json" in str(exc.value)


@pytest.mark.parametrize("command", [["measure"], ["report"]])
@pytest.mark.parametrize("content", ["[1]", "null"])
def test_cli_reads_of_a_broken_config_are_one_line(run_dir, capsys, command, content):
    (run_dir / "config.json").write_text(content)
    assert main([*command, str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run file") and "config.json" in err and "\n" not in err


def test_keys_added_in_a_later_format_take_their_recorded_default(run_dir, monkeypatch):
    _edit_config(run_dir, lambda r: {**r, "train": {k: v for k, v in r["train"].items() if k != "grok_threshold"}})
    new = store.FORMAT_VERSION + 1  # a future format that adds the key
    monkeypatch.setattr(store, "FORMAT_VERSION", new)
    monkeypatch.setattr(g.TrainConfig, "ADDED_KEYS", {new: {"grok_threshold": 0.5}})  # the class's own migration
    assert g.load_run(run_dir).config.train.grok_threshold == 0.5  # an older file: the recorded default
    _edit_config(run_dir, lambda r: {**r, "grok_interp": {**r["grok_interp"], "format": new}})
    with pytest.raises(g.RunDirectoryError, match="'train.grok_threshold' is missing"):
        g.load_run(run_dir)  # a file of the new format must have it


def test_a_format_1_run_loads_with_the_reference_options_off(run_dir):
    """Runs written before the reference options existed (format 1) mean their defaults."""
    keys = [(sec, k) for sec, cls in (("data", g.DataConfig), ("model", g.ModelConfig), ("train", g.TrainConfig))
            for k in cls.ADDED_KEYS[2]]
    assert len(keys) == 13

    def downgrade(r):
        r = {**r, "grok_interp": {**r["grok_interp"], "format": 1}}
        for sec, key in keys:
            r[sec] = {k: v for k, v in r[sec].items() if k != key}
        return r

    _edit_config(run_dir, downgrade)
    cfg = g.load_run(run_dir).config
    assert (cfg.data.shuffle, cfg.model.attn_bias, cfg.model.unembed_bias, cfg.model.mlp_input) == (
        "torch", True, True, "operands")


def test_a_resumed_run_keeps_its_saved_learning_rate(tmp_path):
    out = tmp_path / "r"
    g.train_hooked(out=out, **{**OPTS, "lr": 3e-3, "steps": 20})
    assert g.load_run(out).config.train.lr == 3e-3
    _edit_config(out, lambda r: {**r, "train": {k: v for k, v in r["train"].items() if k != "lr"}})
    with pytest.raises(g.RunDirectoryError, match="lr"):
        g.train_hooked(out=out, resume=True, **{**OPTS, "lr": 3e-3})


# --- broken histories -------------------------------------------------------------------------
@pytest.mark.parametrize("edit, message", [
    (lambda t: t + t.splitlines()[-1] + "\n", "duplicated"),
    (lambda t: "\n".join([t.splitlines()[0], *reversed(t.splitlines()[1:])]) + "\n", "out of order"),
    (lambda t: t[: len(t) - 7], "truncated"),
    (lambda t: t + "45,0.1\n", "row 11 has 2 fields"),
    (lambda t: t.splitlines()[0] + "\n", "no rows"),
    (lambda t: t + ",1,1,1,1\n", "non-integers or blanks"),
])
def test_a_broken_history_is_refused(run_dir, edit, message):
    path = run_dir / "history.csv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(g.RunDirectoryError, match=message):
        g.load_run(run_dir)


# --- stale temporaries ----------------------------------------------------------------------
def test_stale_temporaries_are_removed_by_the_next_writer_only(run_dir):
    (run_dir / ".model.safetensors.0123.tmp").write_bytes(b"half")
    (run_dir / "checkpoints" / ".step_0000050.safetensors.4567.tmp").write_bytes(b"half")
    (run_dir / ".state-89ab").mkdir()
    g.load_run(run_dir)  # a reader touches nothing
    assert (run_dir / ".state-89ab").exists()
    with store.RunStore(run_dir):
        pass
    assert not [p for p in run_dir.rglob(".*") if p.name != store.LOCK]


# --- input gaps and the command line ---------------------------------------------------------
@pytest.mark.parametrize("args, name", [
    (["--lr", "inf"], "--lr "),
    (["--lr", "nan"], "--lr "),
    (["--lr", "0"], "--lr "),
    (["--weight-decay", "inf"], "--weight-decay "),
    (["--grok-threshold", "nan"], "--grok-threshold "),
    (["--split", "random", "--k", "3"], "--k "),
    (["--split", "square", "--k", "3", "--t", "2"], "--t "),
    (["--arch", "mlp", "--n-layers", "2"], "--n-layers "),
    (["--p", "100003"], "--p "),
    (["--offset", "1000000000"], "--offset "),
    (["--steps", "1000000000000"], "--steps "),
    (["--seed", str(2**70)], "--seed "),
    (["--data-seed", str(2**70)], "--data-seed "),
])
def test_input_gaps_are_one_line(tmp_path, capsys, args, name):
    code = main(["train", "--out", str(tmp_path / "r"), "--quiet", "--steps", "5", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {name}") and "\n" not in err
    assert not (tmp_path / "r" / "config.json").exists()


def test_a_callable_returning_floats_is_refused():
    with pytest.raises(g.GrokInterpError, match="must return integers"):
        g.train_hooked(op=lambda a, b: (a + b) / 2, **OPTS)
    with pytest.raises(g.GrokInterpError, match="must return integers"):
        g.Task(11, op=lambda a, b: 0.5 if (int(a), int(b)) == (3, 4) else 1)


@pytest.mark.parametrize("make_args, start", [
    (lambda tmp: ["train", "--out", str(tmp / "file.txt" / "run"), "--quiet", "--steps", "2"], "error: Not a directory"),
    (lambda tmp: ["sweep", "--out", str(tmp / "s"), "--configs", str(tmp / "missing.json")], "error: No such file"),
    (lambda tmp: ["measure", str(tmp / "nowhere")], "error: run directory"),
])
def test_expected_os_errors_are_one_line(tmp_path, capsys, make_args, start):
    (tmp_path / "file.txt").write_text("x")
    assert main(make_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(start) and "\n" not in err


def test_a_genuine_bug_keeps_its_traceback(monkeypatch, tmp_path):
    import grok_interp.runs

    def broken(**kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(grok_interp.runs, "train_hooked", broken)
    with pytest.raises(KeyError):
        main(["train", "--out", str(tmp_path / "r"), "--quiet"])
    monkeypatch.setattr(grok_interp.runs, "train_hooked", lambda **k: os.close(-1))  # EBADF: not the user's
    with pytest.raises(OSError):
        main(["train", "--out", str(tmp_path / "r"), "--quiet"])


def test_errors_are_value_errors():
    assert issubclass(g.RunDirectoryError, g.GrokInterpError) and issubclass(g.GrokInterpError, ValueError)
    from grok_interp.runs import RunDirectoryError

    assert RunDirectoryError is g.RunDirectoryError


# --- copying a run directory as a unit (the sweeps' run cache) ------------------------------
def test_a_copy_is_the_same_run_and_leaves_the_source_alone(run_dir, tmp_path):
    before = _digest(run_dir)
    dest = store.copy_run_dir(run_dir, tmp_path / "copy")
    assert _digest(dest) == before == _digest(run_dir)
    assert not (dest / store.LOCK).exists()
    a, b = g.load_run(run_dir), g.load_run(dest)
    pd.testing.assert_frame_equal(a.history, b.history)
    assert _same_weights(a.model, b.model) and b.path == dest
    # The copy resumes like the original: a raised budget trains on from its own states.
    more = g.train_hooked(out=dest, resume=True, **{**OPTS, "steps": 50})
    assert more.history["step"].iloc[-1] == 50
    assert _digest(run_dir) == before


def test_a_copy_goes_into_an_empty_directory_only(run_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    store.copy_run_dir(run_dir, empty)
    assert g.load_run(empty).history["step"].iloc[-1] == OPTS["steps"]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(g.GrokInterpError, match="not an empty directory"):
        store.copy_run_dir(run_dir, taken)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    with pytest.raises(g.RunDirectoryError, match="not a run directory"):
        store.copy_run_dir(taken, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_source_being_written_is_not_copied(run_dir, tmp_path):
    with store.RunStore(run_dir):  # a writer holds it
        with pytest.raises(g.RunDirectoryError, match="being written by another process"):
            store.copy_run_dir(run_dir, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    assert not list(tmp_path.glob(".copy.*"))


_DIE_COPYING = """
import os, shutil, signal, sys
src, dest, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
real, seen = shutil.copy2, [0]

def copy2(a, b, **k):
    seen[0] += 1
    if seen[0] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(a, b, **k)

shutil.copy2 = copy2
from grok_interp import store
store.copy_run_dir(src, dest)
sys.exit(3)
"""


@pytest.mark.parametrize("nth", [1, 4, 12])
def test_a_copy_killed_midway_leaves_no_destination(run_dir, tmp_path, nth):
    dest = tmp_path / "copy"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _DIE_COPYING, str(run_dir), str(dest), str(nth)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not dest.exists()
    left = list(tmp_path.glob(".copy.*.copy.tmp"))
    assert len(left) == 1  # the half copy, hidden; the next copy to dest removes it
    store.copy_run_dir(run_dir, dest)
    assert not list(tmp_path.glob(".copy.*.copy.tmp"))
    assert _digest(dest) == _digest(run_dir)


# --- removing a run directory as a unit -------------------------------------------------------
def test_remove_run_dir_removes_a_run_and_nothing_else(run_dir, tmp_path):
    copy = store.copy_run_dir(run_dir, tmp_path / "copy")
    assert store.remove_run_dir(copy) is True
    assert not copy.exists() and not list(tmp_path.glob(".copy.*"))
    assert store.remove_run_dir(copy) is False  # already gone: nothing to do
    g.load_run(run_dir)  # the source is untouched
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(g.RunDirectoryError, match="not a run directory"):
        store.remove_run_dir(mine)
    assert (mine / "notes.txt").read_text() == "mine"


def test_remove_run_dir_refuses_a_run_being_written(run_dir, tmp_path):
    copy = store.copy_run_dir(run_dir, tmp_path / "copy")
    before = _digest(copy)
    with store.RunStore(copy):
        with pytest.raises(g.RunDirectoryError, match="being written by another process"):
            store.remove_run_dir(copy)
    assert _digest(copy) == before


def test_remove_run_dir_interrupted_leaves_no_half_run(run_dir, tmp_path, monkeypatch):
    copy = store.copy_run_dir(run_dir, tmp_path / "copy")

    def dies_halfway(path, ignore_errors=False):  # one file deleted, then the process is stopped
        next(p for p in Path(path).rglob("*") if p.is_file()).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(store.shutil, "rmtree", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        store.remove_run_dir(copy)
    monkeypatch.undo()
    assert not copy.exists()  # never a half-deleted run where a loader would look
    assert len(list(tmp_path.glob(".copy.*.rm.tmp"))) == 1
    store.copy_run_dir(run_dir, copy)  # the next copy to the same place clears the leftover
    assert not list(tmp_path.glob(".copy.*.tmp")) and _digest(copy) == _digest(run_dir)


def test_a_failed_start_leaves_no_directory_holding_only_its_lock(tmp_path, monkeypatch):
    # a seed of 2**70 overflowed in torch with no parameter named, after the directory
    # and its .lock were made
    with pytest.raises(g.GrokInterpError, match=r"^seed=1180591620717411303424 is invalid"):
        g.train_hooked(out=tmp_path / "r", seed=2**70, **OPTS)
    assert not (tmp_path / "r").exists()

    def boom(*args, **kwargs):
        raise RuntimeError("model construction failed")

    monkeypatch.setattr(g.runs, "build_model", boom)
    with pytest.raises(RuntimeError):
        g.train_hooked(out=tmp_path / "r", **OPTS)
    assert not (tmp_path / "r").exists()
    (tmp_path / "mine").mkdir()  # a directory the user made stays
    with pytest.raises(RuntimeError):
        g.train_hooked(out=tmp_path / "mine", **OPTS)
    assert (tmp_path / "mine").is_dir()


def test_a_task_checks_its_size_before_allocating():
    start = time.perf_counter()
    with pytest.raises(g.GrokInterpError, match=r"^p=100003 is invalid: a task of .* needs at least"):
        g.Task(p=100003)
    assert time.perf_counter() - start < 5


def test_a_long_schedule_is_never_built(monkeypatch):
    from grok_interp.training import loop

    def built(*args):
        raise AssertionError("checkpoint_schedule built in full")

    monkeypatch.setattr(loop, "checkpoint_schedule", built)
    run = g.train_hooked(**{**OPTS, "steps": 30, "checkpoint_every": 8})
    assert sorted(run.checkpoints) == [0, 1, 2, 4, 8, 16, 24, 30]


# --- files that must agree with each other ---------------------------------------------------
@pytest.mark.parametrize("edit", [
    lambda raw: raw["data"].update(frac=0.5),
    lambda raw: raw["data"].update(data_seed=1),
    lambda raw: raw["data"].update(shuffle="python"),
])
def test_a_config_whose_split_is_not_the_saved_one_names_both_files(run_dir, edit):
    raw = json.loads((run_dir / "config.json").read_text())
    edit(raw)
    (run_dir / "config.json").write_text(json.dumps(raw))
    with pytest.raises(g.RunDirectoryError, match=r"^run files .*config.json and .*data.safetensors disagree") as info:
        g.load_run(run_dir)
    assert "\n" not in str(info.value)


def test_an_inverted_train_mask_is_refused(run_dir):
    data = g.store.read_tensors(run_dir / "data.safetensors")
    data["train_mask"] = 1 - data["train_mask"]
    g.store.write_tensors(run_dir / "data.safetensors", data)
    with pytest.raises(g.RunDirectoryError, match=r"disagree: the random split .* pairs differ"):
        g.load_run(run_dir)


@pytest.mark.parametrize("column", ["test_loss", "train_acc"])
def test_text_in_a_numeric_history_column_is_named(run_dir, column):
    h = pd.read_csv(run_dir / "history.csv")
    h[column] = h[column].astype(object)
    h.loc[2, column] = "oops"
    h.to_csv(run_dir / "history.csv", index=False)
    with pytest.raises(g.RunDirectoryError, match=rf"history.csv: column '{column}' holds text \('oops' at step"):
        g.load_run(run_dir)


def test_a_run_is_never_copied_into_itself(run_dir, tmp_path):
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    for dest in (run_dir / "inner", run_dir, run_dir / "checkpoints" / "deeper"):
        with pytest.raises(g.GrokInterpError, match=r"^dest=.* lies inside"):
            g.store.copy_run_dir(run_dir, dest)
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
    assert g.store.copy_run_dir(run_dir, tmp_path / "beside").is_dir()


def test_file_digests_cover_what_a_copy_holds(run_dir, tmp_path):
    digests = g.store.file_digests(run_dir)
    assert ".lock" not in digests and "model.safetensors" in digests and "checkpoints/step_0000020.safetensors" in digests
    copy = g.store.copy_run_dir(run_dir, tmp_path / "copy")
    assert g.store.file_digests(copy) == digests


def test_a_lock_whose_pid_cannot_be_written_is_released(tmp_path, monkeypatch):
    import errno

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(g.store.os, "pwrite", full)
    with pytest.raises(OSError, match="No space"):
        g.store.RunStore(tmp_path / "r").lock()
    monkeypatch.undo()
    with g.store.RunStore(tmp_path / "r").lock() as rs:  # was: "being written by another process" (our pid)
        assert rs.locked
