"""Config fields and the run-directory format move together.

``tests/data/config_fields.json`` lists every config section's fields at each format
version. A field added to a config class without a new format (and its entry in the
class's own ``ADDED_KEYS``, the value older runs meant) would make every run directory
written before it fail to load; these tests fail first, and say what to do.

The sections checked are those registered with the store
(:func:`grok_interp.store.register_config_section`): every kind of run's config classes,
the transformer's ``data``/``model``/``train`` and the ResNet's ``config``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

import grok_interp as g
import grok_interp.vision  # noqa: F401 - registers the ResNet's config section
from grok_interp import store
from grok_interp.vision import ResNetConfig

FIELDS = json.loads((Path(__file__).parent / "data" / "config_fields.json").read_text())
SECTIONS = store.config_sections()


def test_every_kind_of_run_registers_its_config_sections():
    assert SECTIONS == {"data": g.DataConfig, "model": g.ModelConfig, "train": g.TrainConfig, "config": ResNetConfig}
    latest = FIELDS[str(store.FORMAT_VERSION)] if str(store.FORMAT_VERSION) in FIELDS else {}
    assert set(latest) == set(SECTIONS), "tests/data/config_fields.json lists other sections than the store knows"


def test_the_config_classes_have_the_fields_of_the_current_format():
    latest = str(store.FORMAT_VERSION)
    assert latest in FIELDS, (
        f"format {latest} has no field list in tests/data/config_fields.json: add the config classes' fields there")
    for section, cls in SECTIONS.items():
        fields = sorted(f.name for f in dataclasses.fields(cls))
        added = sorted(set(fields) - set(FIELDS[latest][section]))
        removed = sorted(set(FIELDS[latest][section]) - set(fields))
        assert not added and not removed, (
            f"{cls.__name__} gained {added} / lost {removed} without a new run-directory format: bump "
            f"store.FORMAT_VERSION, record each new key with the value older runs meant in {cls.__name__}.ADDED_KEYS, "
            "and add the new format's field list to tests/data/config_fields.json")


def test_each_format_adds_exactly_the_keys_its_config_classes_record():
    versions = sorted(int(v) for v in FIELDS)
    assert versions[-1] == store.FORMAT_VERSION
    for older, newer in zip(versions, versions[1:]):
        for section, cls in SECTIONS.items():
            gained = set(FIELDS[str(newer)][section]) - set(FIELDS[str(older)][section])
            recorded = {k for v in range(older + 1, newer + 1) for k in store.added_keys(cls).get(v, {})}
            assert gained == recorded, (section, older, newer, sorted(gained ^ recorded))


def test_the_compatibility_view_is_the_classes_tables_and_read_only():
    assert store.ADDED_KEYS[4] == {"train.eval_sparse": 1}
    assert store.ADDED_KEYS[5] == {"config.num_classes": 49, "config.pretrain_epochs": 0, "config.batch_stats_eval": False}
    assert store.ADDED_KEYS[2]["data.shuffle"] == "torch" and store.ADDED_KEYS[3]["config.style"] == "library"
    assert store.ADDED_KEYS[6] == {"config.eval_sparse": 1}
    assert sorted(store.ADDED_KEYS) == [2, 3, 4, 5, 6]
    with pytest.raises(TypeError):
        store.ADDED_KEYS[4]["train.eval_sparse"] = 2  # type: ignore[index]


def test_a_migration_for_a_format_not_yet_written_or_of_no_field_is_refused_at_registration():
    @dataclasses.dataclass
    class Toy:
        width: int = 3
        ADDED_KEYS: ClassVar[dict[int, dict[str, Any]]] = {store.FORMAT_VERSION + 1: {"width": 3}}

    with pytest.raises(g.GrokInterpError, match="bump store.FORMAT_VERSION"):
        store.register_config_section("toy", Toy)
    Toy.ADDED_KEYS = {2: {"height": 1}}
    with pytest.raises(g.GrokInterpError, match="are not its fields"):
        store.register_config_section("toy", Toy)
    assert "toy" not in store.config_sections()
