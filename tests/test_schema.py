"""The prepared-split layout shared by preparation and loading (trimodal.data.schema)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from trimodal.config import DataConfig
from trimodal.data.schema import (
    METADATA_COLUMNS,
    audio_column,
    check_storage_schema,
    clip_features,
    frame_columns,
    frames_column,
    nested_list_array,
    stable_int,
    stable_unit,
    storage_schema,
)


def test_column_names_round_trip():
    assert [audio_column(r) for r in (48000, 16000, 22050)] == [
        "audio_48k",
        "audio_16k",
        "audio_22050hz",
    ]
    names = ["video_id", frames_column(224), frames_column(112), "frames_x", "audio_48k"]
    assert frame_columns(names) == {224: "frames_224", 112: "frames_112"}


@pytest.mark.parametrize(
    "config",
    [
        DataConfig(),
        DataConfig(scheme="segments", segment_seconds=5.0, frame_dtype="float16"),
        DataConfig(audio_rates=[22050], frame_sizes=[64], num_frames=4, frame_margin=1.25),
    ],
)
def test_the_workers_layout_is_the_storage_of_the_datasets_features(config):
    """The decoding workers write ``storage_schema`` without ``datasets``; the split files
    carry ``clip_features``' schema: they must be the same layout, column for column."""
    schema = storage_schema(config)
    features = clip_features(config, ["Guitar", "Piano"])
    check_storage_schema(schema, features.arrow_schema, "test")
    assert schema.names[: len(METADATA_COLUMNS)] == [name for name, _ in METADATA_COLUMNS]
    length = config.segment_seconds if config.scheme == "segments" else config.clip_seconds
    for rate in config.audio_rates:
        assert features[audio_column(rate)].length == round(length * rate)
    for size in config.frame_sizes:
        side = round(size * config.frame_margin)
        assert features[frames_column(size)].shape == (config.num_frames, 3, side, side)
    assert features["label_ids"].feature.names == ["Guitar", "Piano"]


def test_a_changed_layout_is_refused():
    config = DataConfig()
    other = storage_schema(DataConfig(frame_dtype="float16"))
    with pytest.raises(ValueError, match="does not match"):
        check_storage_schema(storage_schema(config), other, "shard")


def test_nested_list_array_holds_the_array_row_major():
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2)
    row = nested_list_array(x)
    assert len(row) == 1 and row.type == pa.list_(pa.list_(pa.list_(pa.list_(pa.uint8()))))
    assert np.array_equal(np.array(row.to_pylist()[0], dtype=np.uint8), x)


def test_stable_hashes_never_change():
    """Splits, sampled clips and evaluation texts are drawn from these: a change would move
    videos between splits of every existing preparation."""
    assert stable_int("split", "abc") == 7094581549833028097
    assert stable_int(7, "clips", "synth0_00001") == 16169273419165674027
    assert stable_unit("split", "abc") == 0.38459803646022733
