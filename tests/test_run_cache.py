"""The run cache: two sweeps that share a configuration train it once.

Two studies are emulated by two :func:`sweep` calls into different ``out`` directories
that share one index directory (``tests/examples/test_quick.py`` reruns one study into
a second directory; which example studies share runs at paper scale is checked in
``tests/test_benchmarks.py`` through ``benchmarks/run_cache_overlap.py``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

import grok_interp as g
import grok_interp.many_runs as many_runs_mod
import grok_interp.runs as runs_mod
from grok_interp import run_cache, store, version
from grok_interp.config import RunConfig
from grok_interp.run_cache import ENV, cache_dir, run_key
from grok_interp.sweeps import sweep

from .helpers import SMALL_MODEL

BASE = dict(p=23, steps=60, eval_every=10, checkpoint_every=20, lr=2e-2, **SMALL_MODEL)


def _sweep(configs, out, cache, base=None, **kwargs):
    return sweep(configs, out, base={**BASE, **(base or {})}, max_workers=1, progress=False, cache=cache, **kwargs)


def _files(path: Path) -> dict[str, str]:
    """Every file's content hash, the lock excluded."""
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file() and f.name != store.LOCK}


def _entries(cache: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in cache.glob("*.json")} if cache.is_dir() else {}


@pytest.fixture
def trained(monkeypatch):
    """The run directories the sweep actually trained (through train_hooked or train_many)."""
    seen: list[str] = []
    real_one, real_many = runs_mod.train_hooked, many_runs_mod.train_many

    def one(*args, **kwargs):
        seen.append(str(kwargs["out"]))
        return real_one(*args, **kwargs)

    def many(specs, outs=None, **kwargs):
        seen.extend(str(o) for o in outs)
        return real_many(specs, outs=outs, **kwargs)

    monkeypatch.setattr(runs_mod, "train_hooked", one)
    monkeypatch.setattr(many_runs_mod, "train_many", many)
    return seen


def test_two_studies_sharing_a_configuration_train_it_once(tmp_path, trained):
    cache = tmp_path / "cache"
    a = _sweep([{"seed": 1}, {"seed": 2}], tmp_path / "a", cache)
    assert list(a["status"]) == ["done", "done"] and list(a["cached_from"]) == ["", ""]
    assert sorted(trained) == sorted(str((tmp_path / "a" / n).resolve()) for n in ("seed=1", "seed=2"))
    assert len(_entries(cache)) == 2  # both recorded

    trained.clear()
    b = _sweep([{"seed": 1}, {"seed": 3}], tmp_path / "b", cache)
    assert list(b["status"]) == ["cached", "done"]
    assert trained == [str((tmp_path / "b" / "seed=3").resolve())]  # only its own run trained
    src, dst = Path(a.loc[0, "path"]), Path(b.loc[0, "path"])
    assert Path(b.loc[0, "cached_from"]) == src.resolve() and b.loc[1, "cached_from"] == ""
    assert b.loc[0, "batch_size"] == 0
    assert _files(dst) == _files(src)  # every file, byte for byte
    assert (dst / store.HISTORY).read_bytes() == (src / store.HISTORY).read_bytes()
    run, original = g.load_run(dst), g.load_run(src)
    assert run.path == dst
    pd.testing.assert_frame_equal(run.history, original.history)
    assert run.checkpoint_steps == original.checkpoint_steps
    for step in original.checkpoint_steps:
        w, w0 = run.weights_at(step), original.weights_at(step)
        assert set(w) == set(w0) and all(torch.equal(w[k], w0[k]) for k in w0)
    for col in ("memorised_at", "grokked_at", "final_step", "final_test_acc", "u_acc", "n_train", "ceiling"):
        x, y = a.loc[0, col], b.loc[0, col]
        assert (pd.isna(x) and pd.isna(y)) or x == y, col
    saved = pd.read_csv(tmp_path / "b" / "sweep.csv")
    assert list(saved["status"]) == ["cached", "done"] and Path(saved.loc[0, "cached_from"]) == src.resolve()
    # The copy carries the source's training time: what the cache saved.
    assert a.loc[0, "train_s"] > 0 and b.loc[0, "train_s"] == a.loc[0, "train_s"]

    # The copy is a run like any other: a rerun skips it, a raised budget resumes it.
    trained.clear()
    again = _sweep([{"seed": 1}, {"seed": 3}], tmp_path / "b", cache)
    assert list(again["status"]) == ["skipped", "skipped"] and trained == []
    assert list(again["wall_s"]) == [0.0, 0.0] and list(again["train_s"]) == list(b["train_s"])  # kept by a skip
    before = _files(src)
    longer = _sweep([{"seed": 1}], tmp_path / "b", cache, base={"steps": 80})
    assert longer.loc[0, "status"] == "done" and longer.loc[0, "final_step"] == 80
    h = g.load_run(dst).history
    pd.testing.assert_frame_equal(h[h["step"] <= 60].reset_index(drop=True), original.history)
    assert _files(src) == before  # the source is untouched


def test_options_key_is_the_key_a_sweep_records(tmp_path):
    """A study's ``--plan`` keys its runs with ``options_key``: it must name the index
    entry the sweep writes for the run (``record`` included), and refuse uncacheable runs."""
    cache = tmp_path / "cache"
    record = ["med", "weight_norm"]
    _sweep([{"seed": 1}, {"seed": 2, "record": record}], tmp_path / "a", cache)
    keys = {run_cache.options_key({**BASE, "seed": 1}), run_cache.options_key({**BASE, "seed": 2, "record": record})}
    assert set(_entries(cache)) == keys and None not in keys
    assert run_cache.options_key({**BASE, "seed": 2}) not in keys  # the recorded measures are part of it
    assert run_cache.options_key({**BASE, "mask": torch.ones(23, 23, dtype=torch.bool)}) is None
    assert run_cache.options_key({**BASE, "p": 24}) is None  # invalid: 24 is not a prime


def test_the_index_names_runs_and_survives_the_sweeps_that_wrote_it(tmp_path):
    cache = tmp_path / "cache"
    a = _sweep([{"seed": 1}], tmp_path / "a", cache)
    [entry] = _entries(cache).values()
    assert Path(entry["path"]) == Path(a.loc[0, "path"]).resolve()
    assert entry["key"] == run_key(RunConfig.from_kwargs(**BASE, seed=1))
    assert entry["payload"]["versions"]["grok_interp"] == g.__version__
    assert entry["payload"]["versions"]["torch"] == torch.__version__
    assert run_cache.clear(cache) == 1 and _entries(cache) == {}
    assert (Path(a.loc[0, "path"]) / store.HISTORY).exists()  # clearing forgets runs, never deletes them
    b = _sweep([{"seed": 1}], tmp_path / "b", cache)
    assert b.loc[0, "status"] == "done"


@pytest.mark.parametrize("change", [{"lr": 1e-2}, {"seed": 5}, {"record": ["med"]}])
def test_a_changed_training_option_misses(tmp_path, trained, change):
    cache = tmp_path / "cache"
    _sweep([{"seed": 1}], tmp_path / "a", cache)
    trained.clear()
    b = _sweep([{"seed": 1, **change}], tmp_path / "b", cache)
    assert b.loc[0, "status"] == "done" and trained == [str(Path(b.loc[0, "path"]).resolve())]
    assert len(_entries(cache)) == 2


def test_what_does_not_change_the_run_still_hits(tmp_path, trained):
    # The same configuration under another run name (lr from the configuration, not
    # base), with a progress bar, no batching, two workers and ceiling radii.
    cache = tmp_path / "cache"
    _sweep([{"seed": 1}, {"seed": 2}], tmp_path / "a", cache)
    trained.clear()
    base = {k: v for k, v in BASE.items() if k != "lr"}
    b = sweep([{"lr": 2e-2, "seed": 1}], tmp_path / "b", base=base, cache=cache, progress=True, batched=False,
              max_workers=2, radii=[2])
    assert b.loc[0, "run"] == "lr=0.02,seed=1" and b.loc[0, "status"] == "cached" and trained == []
    assert not math.isnan(b.loc[0, "ceiling_r2"])


@pytest.mark.parametrize("bump", ["version", "source"])
def test_another_library_version_misses(tmp_path, trained, monkeypatch, bump):
    cache = tmp_path / "cache"
    _sweep([{"seed": 1}], tmp_path / "a", cache)
    if bump == "version":
        monkeypatch.setattr(version, "VERSION", "99.0.0")
    else:  # an edited checkout that still says 0.1.0
        monkeypatch.setattr(run_cache, "source_digest", lambda: "0" * 64)
    trained.clear()
    b = _sweep([{"seed": 1}], tmp_path / "b", cache)
    assert b.loc[0, "status"] == "done" and len(trained) == 1


PACKAGE = Path(run_cache.__file__).resolve().parent


def _package_copy(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def _touch(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


@pytest.mark.parametrize("edit, changes", [
    ("viz/plots.py", False), ("vision/train.py", False), ("theory.py", False), ("measures/compare.py", False),
    ("run_cache.py", False), ("training/loop.py", True), ("models.py", True), ("measures/record.py", False),
    ("store.py", True), ("new_module.py", True),
])
def test_source_digest_changes_with_the_training_code_only(tmp_path, edit, changes):
    root = _package_copy(tmp_path)
    before = run_cache.source_digest(root)
    assert before == run_cache.source_digest(PACKAGE)  # the copy is the package
    target = root / edit
    if target.exists():
        _touch(target)
    else:  # a new file is in the digest unless it is listed as neutral
        target.write_text("X = 1\n")
    assert (run_cache.source_digest(root) != before) is changes


def test_every_neutral_entry_names_a_package_file():
    for name in run_cache.HISTORY_NEUTRAL:
        path = PACKAGE / name
        assert (path.is_dir() if name.endswith("/") else path.is_file()), name


def _module_level_imports(path: Path) -> set[str]:
    """Package-relative files (``a/b.py`` or ``a/``) that ``path`` imports at module level."""
    rel_dir = path.parent.relative_to(PACKAGE)
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = rel_dir.parts[: len(rel_dir.parts) - (node.level - 1)]
            elif (node.module or "").startswith("grok_interp"):
                base = ()
                node = ast.ImportFrom(module=node.module.removeprefix("grok_interp").lstrip(".") or None,
                                      names=node.names, level=1)
            else:
                continue
            parts = list(base) + (node.module.split(".") if node.module else [])
            targets = [parts] if node.module else [parts + [a.name] for a in node.names]
            for t in targets:
                stem = PACKAGE.joinpath(*t)
                found.add("/".join(t) + ("/" if stem.is_dir() else ".py"))
    return found


def test_the_training_code_imports_no_neutral_module():
    # HISTORY_NEUTRAL is only safe while the code that trains and saves a run does not
    # depend on those files; a package __init__ only re-exports, and sweeps.py needs
    # this cache to look runs up (neither changes what a run directory holds).
    allowed = {("sweeps.py", "run_cache.py")}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" or run_cache.is_history_neutral(rel):
            continue
        bad = {m for m in _module_level_imports(path) if run_cache.is_history_neutral(m) and (rel, m) not in allowed}
        assert not bad, f"{rel} imports {bad}, which HISTORY_NEUTRAL leaves out of the run-cache key"


def _edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


def _damage(kind: str, src: Path, cache: Path) -> None:
    [entry_file] = cache.glob("*.json")
    if kind == "deleted":
        shutil.rmtree(src)
    elif kind == "config_edited":
        _edit_json(src / store.CONFIG, lambda c: c["train"].update(weight_decay=0.5))
    elif kind == "history_edited":
        h = pd.read_csv(src / store.HISTORY)
        h.loc[len(h) - 1, "test_acc"] = 0.123
        h.to_csv(src / store.HISTORY, index=False)
    elif kind == "unfinished":
        _edit_json(src / store.STATUS, lambda s: s.update(finished=False))
    elif kind == "retrained_elsewhere":  # the entry names a run of another configuration
        other = _sweep([{"seed": 9}], src.parent, False)
        _edit_json(entry_file, lambda e: e.update(path=str(Path(other.loc[0, "path"]).resolve())))
    elif kind == "entry_corrupt":
        entry_file.write_text("{not json")
    elif kind == "model_swapped":  # another step's weights under the final model's name: names agree
        shutil.copy(src / "checkpoints" / "step_0000040.safetensors", src / store.MODEL)
    elif kind == "model_truncated":
        data = (src / store.MODEL).read_bytes()
        (src / store.MODEL).write_bytes(data[: len(data) // 2])
    elif kind == "checkpoint_swapped":
        shutil.copy(src / "checkpoints" / "step_0000020.safetensors", src / "checkpoints" / "step_0000040.safetensors")
    elif kind == "entry_without_hashes":  # written before files were hashed
        _edit_json(entry_file, lambda e: e.pop("files"))
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["deleted", "config_edited", "history_edited", "unfinished", "retrained_elsewhere", "entry_corrupt",
             "model_swapped", "model_truncated", "checkpoint_swapped", "entry_without_hashes"]
)
def test_a_stale_entry_is_not_used_and_is_replaced(tmp_path, trained, kind):
    cache = tmp_path / "cache"
    a = _sweep([{"seed": 1}], tmp_path / "a", cache)
    src = Path(a.loc[0, "path"])
    _damage(kind, src, cache)
    left = _files(src) if src.exists() else None
    trained.clear()
    b = _sweep([{"seed": 1}], tmp_path / "b", cache)
    assert b.loc[0, "status"] == "done" and b.loc[0, "cached_from"] == ""
    assert trained == [str((tmp_path / "b" / "seed=1").resolve())]
    [entry] = _entries(cache).values()  # the stale entry was replaced by the new run
    assert Path(entry["path"]) == (tmp_path / "b" / "seed=1").resolve()
    if left is not None:
        assert _files(src) == left  # a stale source is never touched


def test_cache_off_trains_again(tmp_path, trained, monkeypatch):
    cache = tmp_path / "cache"
    _sweep([{"seed": 1}], tmp_path / "a", cache)
    trained.clear()
    assert _sweep([{"seed": 1}], tmp_path / "b", False).loc[0, "status"] == "done"
    monkeypatch.setenv(ENV, "off")  # the default (cache=None) reads the environment
    assert _sweep([{"seed": 1}], tmp_path / "c", None).loc[0, "status"] == "done"
    assert len(trained) == 2
    monkeypatch.setenv(ENV, str(cache))
    d = _sweep([{"seed": 1}], tmp_path / "d", None)
    assert d.loc[0, "status"] == "cached" and len(trained) == 2


def test_only_runs_trained_from_scratch_are_recorded(tmp_path):
    cache = tmp_path / "cache"
    # A run interrupted before this sweep (then continued by it) is not recorded: part of
    # its history may come from another library version.
    cut = tmp_path / "a" / "seed=1"
    g.train_hooked(out=cut, progress=False, **{**BASE, "steps": 40}, seed=1)
    _edit_json(cut / store.STATUS, lambda s: s.update(finished=False))
    a = _sweep([{"seed": 1}], tmp_path / "a", cache)
    assert a.loc[0, "status"] == "done" and _entries(cache) == {}
    # Runs whose options are not a plain configuration (a callable measure) have no key.
    b = _sweep([{"seed": 1}], tmp_path / "b", cache, base={"record": [lambda model, task: {"one": 1.0}]})
    assert b.loc[0, "status"] == "done" and _entries(cache) == {}
    # Failed runs are not recorded either.
    c = _sweep([{"split": "square", "k": 99}], tmp_path / "c", cache)
    assert c.loc[0, "status"] == "failed" and _entries(cache) == {}


def test_an_occupied_directory_is_never_overwritten_by_a_cached_run(tmp_path):
    cache = tmp_path / "cache"
    _sweep([{"seed": 1}], tmp_path / "a", cache)
    mine = tmp_path / "b" / "seed=1"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    b = _sweep([{"seed": 1}], tmp_path / "b", cache)
    assert b.loc[0, "status"] == "failed" and "not a run directory" in b.loc[0, "error"]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


# --- the key -----------------------------------------------------------------------------
CPU = dict(p=23, device="cpu")


# One row per config field: (field, a changed value, other options the change needs).
KEY_FIELDS = [
    ("p", 29, {}), ("op", "subtract", {}), ("offset", 2, {}), ("split", "mask", {}), ("frac", 0.4, {}),
    ("data_seed", 1, {}), ("k", 3, {"split": "square", "k": 2}), ("t", 3, {"split": "strip", "t": 2}),
    ("shuffle", "python", {}),
    ("arch", "mlp", {}), ("n_layers", 2, {}), ("n_heads", 8, {}), ("d_model", 64, {}), ("d_head", 16, {}),
    ("d_mlp", 256, {}), ("act_fn", "gelu", {}), ("normalization", "LN", {}), ("pos_embed", False, {}),
    ("init", "tl", {}), ("embed_init", "circulant", {}), ("freeze_biases", True, {}), ("backend", "hooked", {}),
    ("seed", 1, {}), ("attn_bias", False, {}), ("unembed_bias", False, {}),
    ("mlp_input", "operands_and_eq", {"arch": "mlp"}),
    ("steps", 100, {}), ("lr", 2e-3, {}), ("weight_decay", 0.5, {}), ("betas", (0.9, 0.99), {}),
    ("warmup_steps", 0, {}), ("loss", "mse", {}), ("eval_every", 20, {}), ("eval_sparse", 1, {}),
    ("checkpoint_every", 50, {}),
    ("stop_after_grok", 100, {}), ("grok_threshold", 0.9, {}), ("stop_on_plateau", 100, {}),
    ("plateau_delta", 0.05, {}), ("forward", "hooked", {}), ("device", "auto", {}), ("grokfast", "ema", {}),
    ("grokfast_alpha", 0.9, {"grokfast": "ema"}), ("grokfast_window", 50, {"grokfast": "ma"}),
    ("grokfast_lamb", 3.0, {"grokfast": "ema"}), ("perpendicular_grad", True, {}), ("optimizer", "sgd", {}),
    ("momentum", 0.9, {"optimizer": "sgd"}),
]


def test_the_key_table_covers_every_config_field():
    fields = set(RunConfig.from_kwargs().flat())
    assert {row[0] for row in KEY_FIELDS} == fields, "add the new config field to KEY_FIELDS"


@pytest.mark.parametrize("option, value, needs", KEY_FIELDS, ids=[row[0] for row in KEY_FIELDS])
def test_every_config_field_is_in_the_key(option, value, needs):
    before = RunConfig.from_kwargs(**{**CPU, **needs})
    after = RunConfig.from_kwargs(**{**CPU, **needs, option: value})
    assert before.flat()[option] != after.flat()[option]
    assert run_key(before) != run_key(after)


USER_MEASURES = """
def helper(ctx):
    return float(ctx.model.W_E.norm())


def alpha(ctx):
    return helper(ctx) + 1.0


def beta(ctx):
    return 2.0
"""


def _register_user_measures(tmp_path: Path, source: str, monkeypatch) -> None:
    """Load ``source`` as the module ``user_measures`` (a fresh import of the edited file,
    as a new process would see it) and register its ``alpha`` and ``beta``."""
    import importlib.util
    import sys

    from grok_interp.measures import register_measure

    file = tmp_path / "user_measures.py"
    file.write_text(source)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    spec = importlib.util.spec_from_file_location("user_measures", file)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "user_measures", module)
    spec.loader.exec_module(module)
    register_measure("alpha", module.alpha, replace=True)
    register_measure("beta", module.beta, replace=True)


def test_a_recorded_measure_keys_the_run_by_its_own_source(tmp_path, monkeypatch):
    from grok_interp.measures import record

    monkeypatch.setattr(record, "_REGISTRY", dict(record._REGISTRY))
    config = RunConfig.from_kwargs(**CPU)
    _register_user_measures(tmp_path, USER_MEASURES, monkeypatch)
    key_a, key_b, key_none = run_key(config, ["alpha"]), run_key(config, ["beta"]), run_key(config)
    # an edit of another measure leaves the key of a run recording alpha alone
    _register_user_measures(tmp_path, USER_MEASURES.replace("return 2.0", "return 3.0  # changed"), monkeypatch)
    assert run_key(config, ["alpha"]) == key_a and run_key(config) == key_none
    assert run_key(config, ["beta"]) != key_b
    # an edit of alpha, or of the helper it calls, changes it
    _register_user_measures(tmp_path, USER_MEASURES.replace("+ 1.0", "+ 2.0"), monkeypatch)
    assert run_key(config, ["alpha"]) != key_a
    _register_user_measures(tmp_path, USER_MEASURES.replace(".norm())", ".norm() ** 2)"), monkeypatch)
    assert run_key(config, ["alpha"]) != key_a
    # the built-ins likewise: replacing med's function changes med's runs, not weight_norm's
    wn, med = run_key(config, ["weight_norm"]), run_key(config, ["med"])
    record.register_measure("med", lambda c: 0.0, replace=True)
    assert run_key(config, ["weight_norm"]) == wn and run_key(config, ["med"]) != med
    # closures that differ only in their values (the loss variants) have different keys
    payload = run_cache.measures_payload(["restricted_loss_difference", "restricted_loss_tl_demo"])
    assert payload["measures"][0]["source"] != payload["measures"][1]["source"]
    # an alias is keyed by the measures it stands for
    assert run_cache.measures_payload("default")["measures"] == run_cache.measures_payload(
        ["med", "weight_norm", "uniformity"])["measures"]


def test_a_measure_without_readable_source_makes_the_run_uncacheable(monkeypatch):
    from grok_interp.measures import record

    monkeypatch.setattr(record, "_REGISTRY", dict(record._REGISTRY))
    namespace: dict = {}
    exec("def typed_in(ctx):\n    return 1.0\n", namespace)  # noqa: S102 - a function with no file, as in a REPL
    record.register_measure("typed_in", namespace["typed_in"])
    config = RunConfig.from_kwargs(**CPU)
    with pytest.raises(g.GrokInterpError, match="no readable source"):
        run_key(config, ["typed_in"])
    assert run_cache.options_key({**CPU, "record": ["typed_in"]}) is None
    assert run_cache.options_key({**CPU, "record": ["med"]}) is not None


def test_the_key_holds_record_and_versions(monkeypatch):
    config = RunConfig.from_kwargs(**CPU)
    key = run_key(config)
    assert run_key(RunConfig.from_kwargs(**CPU)) == key  # stable
    assert run_key(config, record=["med"]) != key
    assert run_key(config, record="med") == run_key(config, record=["med"])
    with pytest.raises(g.GrokInterpError, match="record="):
        run_key(config, record=[lambda model, task: {}])
    for module, name, value in [(version, "VERSION", "99.0.0"), (torch, "__version__", "0.0.1"),
                                (store, "FORMAT_VERSION", 99)]:
        with monkeypatch.context() as m:
            m.setattr(module, name, value)
            assert run_key(config) != key, name
    monkeypatch.setattr(run_cache.tl_backend, "TL_VERSION", "0.0.1")
    assert run_key(config) != key


def test_where_the_index_lives(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "grok_interp" / "runs" == cache_dir(True)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "grok_interp" / "runs"
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no home"))))
    assert cache_dir() is None  # no home directory: no cache, not a crash
    monkeypatch.setenv(ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    for off in ("off", "0", "false", "OFF"):
        monkeypatch.setenv(ENV, off)
        assert cache_dir() is None
    assert cache_dir(False) is None and cache_dir(tmp_path / "arg") == tmp_path / "arg"
    for bad in (3, "", " "):
        with pytest.raises(g.GrokInterpError, match="cache="):
            cache_dir(bad)
    with pytest.raises(g.GrokInterpError, match="cache="):
        sweep([{}], tmp_path / "s", cache=3.5)


def test_cli_cache_flags(tmp_path, capsys):
    from grok_interp.cli import main

    args = ["sweep", "--workers", "1", "--quiet", "--set", "p=23", "--set", "steps=30", "--set", "d_model=32",
            "--set", "d_mlp=64", "--grid", "seed=1"]
    cache = str(tmp_path / "cache")
    assert main([*args, "--out", str(tmp_path / "a"), "--cache", cache]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--cache", cache]) == 0
    assert main([*args, "--out", str(tmp_path / "c"), "--no-cache"]) == 0
    status = {d: pd.read_csv(tmp_path / d / "sweep.csv").loc[0, "status"] for d in "abc"}
    assert status == {"a": "done", "b": "cached", "c": "done"}
    assert "cached" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # one or the other
        main([*args, "--out", str(tmp_path / "d"), "--cache", cache, "--no-cache"])
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_record_run_refuses_what_is_not_that_finished_run(tmp_path):
    cache = tmp_path / "cache"
    run = g.train_hooked(out=tmp_path / "r", progress=False, **BASE)
    config = RunConfig.from_kwargs(**BASE)
    with pytest.raises(g.GrokInterpError, match="config.json differs"):
        run_cache.record_run(cache, RunConfig.from_kwargs(**{**BASE, "seed": 3}), run.path)
    _edit_json(run.path / store.STATUS, lambda s: s.update(finished=False))
    with pytest.raises(g.GrokInterpError, match="not the finished run"):
        run_cache.record_run(cache, config, run.path)
    assert _entries(cache) == {}
    _edit_json(run.path / store.STATUS, lambda s: s.update(finished=True))
    key = run_cache.record_run(cache, config, run.path)
    assert run_cache.lookup(cache, config) == run.path.resolve() and key in _entries(cache)
    assert run_cache.lookup(cache, config, record=["med"]) is None  # another key
