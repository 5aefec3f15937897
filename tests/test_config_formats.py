"""Config fields and the run-directory format move together.

``tests/data/config_fields.json`` lists every config section's fields at each format
version. A field added to a config class without a new format (and its entry in
``store.ADDED_KEYS``, the value older runs meant) would make every run directory
written before it fail to load; these tests fail first, and say what to do.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import grok_interp as g
from grok_interp import store
from grok_interp.vision import ResNetConfig

FIELDS = json.loads((Path(__file__).parent / "data" / "config_fields.json").read_text())
SECTIONS = {"data": g.DataConfig, "model": g.ModelConfig, "train": g.TrainConfig, "config": ResNetConfig}


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
            "store.FORMAT_VERSION, record each new key with the value older runs meant in store.ADDED_KEYS, and add "
            "the new format's field list to tests/data/config_fields.json")


def test_each_format_adds_exactly_the_keys_recorded_in_added_keys():
    versions = sorted(int(v) for v in FIELDS)
    for older, newer in zip(versions, versions[1:]):
        for section in SECTIONS:
            gained = set(FIELDS[str(newer)][section]) - set(FIELDS[str(older)][section])
            recorded = {k.split(".", 1)[1] for v in range(older + 1, newer + 1)
                        for k in store.ADDED_KEYS.get(v, {}) if k.split(".", 1)[0] == section}
            assert gained == recorded, (section, older, newer, sorted(gained ^ recorded))
