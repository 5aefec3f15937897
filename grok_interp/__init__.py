"""grok_interp: study grokking with mechanistic interpretability, on TransformerLens.

Train a hooked transformer on a prime-field operation, keep its whole training
history, and analyse it with the tools you already use::

    import grok_interp as g
    run = g.train_hooked(p=113, out="runs/p113")     # GrokRun: model, history, ...
    logits, cache = run.model.run_with_cache(run.task.tokens(run.task.all_pairs()))
    run = g.load_run("runs/p113")
"""

import warnings as _warnings

from .threads import default_spin_count as _default_spin_count

_default_spin_count()  # before anything imports torch (see grok_interp.threads)

# tqdm.auto, imported by the training loops, warns "IProgress not found" when a Jupyter
# kernel lacks ipywidgets, then falls back to the text bar. The fallback is fine; the
# warning is noise at every `import grok_interp`. Import it once here, quietly.
with _warnings.catch_warnings():
    _warnings.filterwarnings("ignore", message="IProgress not found")
    import tqdm.auto as _tqdm_auto  # noqa: F401

from . import store
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .errors import GrokInterpError, RunDirectoryError
from .protocols import DatasetRun, Run, TaskRun
from .runs import GrokRun, load_run, train_hooked
from .many_runs import train_many
from .external import from_checkpoint_file, from_model
from .presets import PRESETS
from .tasks import OPERATIONS, Split, Task
from .sweeps import grid, sweep
from . import measures, models, theory, trackers  # noqa: F401 - g.models.weights etc. stay one attribute away
from .measures import compare_measures, events

# The image branch registers itself when imported; until then, its loader by name
# (so `load_run` reads ResNet runs without importing torchvision for every user).
store.register_loader("resnet", "grok_interp.vision.train:load_resnet_run")

#: Public names imported on first use: the report pulls in matplotlib and circuitsvis,
#: the image branch torchvision; neither is needed to train or measure.
_LAZY = {"write_report": ("grok_interp.viz.report", "write_report"),
         "train_resnet": ("grok_interp.vision.train", "train_resnet")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'grok_interp' has no attribute {name!r}")


from .version import VERSION  # noqa: E402

__version__ = VERSION  # one source: grok_interp/version.py (the run cache keys runs by it)

__all__ = [
    # train
    "train_hooked",
    "train_many",
    "sweep",
    "grid",
    "train_resnet",
    "PRESETS",
    # load and bring in
    "load_run",
    "from_model",
    "from_checkpoint_file",
    "GrokRun",
    "Run",
    "TaskRun",
    "DatasetRun",
    # describe
    "Task",
    "Split",
    "OPERATIONS",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "RunConfig",
    # measure, predict, look
    "measures",
    "events",
    "compare_measures",
    "theory",
    "write_report",
    # the run directory and errors
    "store",
    "GrokInterpError",
    "RunDirectoryError",
]
