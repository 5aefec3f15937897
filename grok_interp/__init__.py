"""grok_interp: study grokking with mechanistic interpretability, on TransformerLens.

Train a hooked transformer on a prime-field operation, keep its whole training
history, and analyse it with the tools you already use::

    import grok_interp as g
    run = g.train_hooked(p=113, out="runs/p113")     # GrokRun: model, history, ...
    logits, cache = run.model.run_with_cache(run.task.tokens(run.task.all_pairs()))
    run = g.load_run("runs/p113")
"""

import warnings as _warnings

# tqdm.auto, imported by the training loops, warns "IProgress not found" when a Jupyter
# kernel lacks ipywidgets, then falls back to the text bar. The fallback is fine; the
# warning is noise at every `import grok_interp`. Import it once here, quietly.
with _warnings.catch_warnings():
    _warnings.filterwarnings("ignore", message="IProgress not found")
    import tqdm.auto as _tqdm_auto  # noqa: F401

from . import store
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .errors import GrokInterpError, RunDirectoryError
from .models import MLPBaseline, build_model, weights
from .protocols import DatasetRun, Run, TaskRun
from .runs import GrokRun, load_run, train_hooked
from .external import from_checkpoint_file, from_model
from .presets import PRESETS
from .tasks import OPERATIONS, Split, Task
from . import measures
from .measures import compare_measures, events

# The image branch registers itself when imported; until then, its loader by name
# (so `load_run` reads ResNet runs without importing torchvision for every user).
store.register_loader("resnet", "grok_interp.vision.train:load_resnet_run")

__version__ = "0.1.0"

__all__ = [
    "train_hooked",
    "load_run",
    "GrokRun",
    "Run",
    "TaskRun",
    "DatasetRun",
    "from_model",
    "from_checkpoint_file",
    "PRESETS",
    "GrokInterpError",
    "RunDirectoryError",
    "store",
    "Task",
    "Split",
    "OPERATIONS",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "RunConfig",
    "build_model",
    "weights",
    "MLPBaseline",
    "measures",
    "events",
    "compare_measures",
]
