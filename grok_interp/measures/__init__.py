"""Progress measures and circuit analyses of grokking runs.

Plain functions of (weights or model, task) returning numbers or tensors; one
documented default per measure (formula in each docstring), other published variants
as named options. The trainer records any of them by name through :func:`recorder`
(``train_hooked(..., record="default")``); :meth:`GrokRun.measure` evaluates them over
saved checkpoints; :func:`compare_measures` asks which one tracks test loss.

* uniformity (the paper): :func:`med`, :func:`activation_med`,
  :func:`uniformity_stats`, and :func:`rqi` (Liu et al. 2022);
* Fourier (Nanda et al.): :func:`fourier_basis`, :func:`fourier_transform_1d`,
  :func:`fourier_transform_2d`, :func:`embedding_fourier_norms`,
  :func:`neuron_frequency_clusters`, :func:`key_frequencies`, :func:`gini`,
  :func:`fourier_gini`;
* circuits: :func:`restricted_loss`, :func:`excluded_loss` (Nanda et al.'s, and the
  variants named in ``VARIANTS``), :func:`trig_loss` (the paper's restricted loss under
  its code's name), :func:`trig_directions`, :func:`logit_cosine_similarity`,
  :func:`weight_norm`;
* numerical stability (Prieto et al. 2025): :func:`stability`, :func:`per_sample_loss`;
* events: :func:`events` (memorised_at, grokked_at: test accuracy >= 0.99, the halfway_at
  and onset_at GO-Epochs, U-Acc, L-Acc of a history);
* recording: :func:`recorder`, :func:`compute_measures`, :func:`measure_checkpoints`;
  a new measure is one function and one :func:`register_measure` call;
* comparison: :func:`compare_measures`.

Activations are always read with TransformerLens hooks (``run_with_cache`` with a
names filter) on the hooked model.
"""

from ._probe import Probe
from .circuits import (
    VARIANTS,
    excluded_loss,
    key_projection,
    logit_cosine_similarity,
    restricted_loss,
    trig_directions,
    trig_loss,
    weight_norm,
)
from .compare import compare_measures
from .phases import Events, events
from .fourier import (
    embedding_fourier_norms,
    fourier_basis,
    fourier_basis_names,
    fourier_gini,
    fourier_transform_1d,
    fourier_transform_2d,
    gini,
    key_frequencies,
    neuron_frequency_clusters,
    neuron_logit_map,
)
from .record import (
    DEFAULT_MEASURES,
    FOURIER_MEASURES,
    MEASURE_NAMES,
    RENAMED_MEASURES,
    MeasureContext,
    MeasureSpec,
    measure_names,
    plot_columns,
    register_measure,
    unregister_measure,
    compute_measures,
    measure_checkpoints,
    measure_specs,
    recorder,
)
from .stability import DTYPES, per_sample_loss, stability
from .uniformity import MED_VARIANTS, activation_med, med, rqi, uniformity_stats

__all__ = [
    "med",
    "MED_VARIANTS",
    "activation_med",
    "uniformity_stats",
    "rqi",
    "fourier_basis",
    "fourier_basis_names",
    "fourier_transform_1d",
    "fourier_transform_2d",
    "embedding_fourier_norms",
    "neuron_frequency_clusters",
    "key_frequencies",
    "gini",
    "fourier_gini",
    "neuron_logit_map",
    "restricted_loss",
    "excluded_loss",
    "trig_loss",
    "trig_directions",
    "VARIANTS",
    "stability",
    "per_sample_loss",
    "DTYPES",
    "RENAMED_MEASURES",
    "MeasureContext",
    "MeasureSpec",
    "register_measure",
    "unregister_measure",
    "measure_names",
    "plot_columns",
    "logit_cosine_similarity",
    "key_projection",
    "weight_norm",
    "Events",
    "events",
    "compare_measures",
    "recorder",
    "compute_measures",
    "measure_checkpoints",
    "measure_specs",
    "MEASURE_NAMES",
    "DEFAULT_MEASURES",
    "FOURIER_MEASURES",
    "Probe",
]
