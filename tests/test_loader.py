"""The training loader: tensors per channel, augmentation replay, sampler, collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_fixtures import prepared_reference

from trimodal.config import DataConfig
from trimodal.data import PreparedClips, VideoBatchSampler, collate_clips
from trimodal.modalities import model_input


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return prepared_reference(tmp_path_factory)


def test_whole_chain_yields_model_ready_batches(reference):
    """synthetic → prepare → loader: shapes, dtypes and ranges each channel expects."""
    corpus, out, config = reference
    for rate, size in ((48000, 224), (16000, 112)):
        ds = PreparedClips(out, "train", train=True, audio_rate=rate, video_size=size, seed=1)
        sampler = VideoBatchSampler(ds.video_ids, batch_size=3, seed=1)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate_clips)
        batch = next(iter(loader))
        b = len(batch["text"])
        assert b == 3 and all(isinstance(t, str) and t for t in batch["text"])
        assert batch["audio"].shape == (b, int(config.clip_seconds * rate))
        # Stored types through the loader (int16, uint8); float only in the model's adapter.
        assert batch["audio"].dtype == torch.int16 and batch["video"].dtype == torch.uint8
        audio = model_input(batch["audio"])
        assert audio.dtype == torch.float32 and 0.01 < audio.abs().max() <= 1.0
        assert batch["video"].shape == (b, 16, 3, size, size)
        assert batch["video"].float().std() > 2.5  # real pictures (of 255), not a constant
        assert batch["labels_multi_hot"].shape == (b, 45)
        assert batch["clip_index"].dtype == torch.long
        for ids, hot in zip(batch["label_ids"], batch["labels_multi_hot"]):
            assert set(torch.nonzero(hot).flatten().tolist()) == set(ids.tolist())


def test_eval_is_deterministic_and_matches_the_stored_clip(reference):
    corpus, out, config = reference
    ds = PreparedClips(out, "dev", train=False)
    first = [ds[i] for i in range(len(ds))]
    second = [ds[i] for i in range(len(ds))]
    for a, b in zip(first, second):
        assert a["text"] == b["text"]
        assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["video"], b["video"])
    # Another epoch or a new instance changes nothing in evaluation.
    ds.set_epoch(3)
    again = PreparedClips(out, "dev", train=False)
    for i, a in enumerate(first):
        assert torch.equal(ds[i]["video"], a["video"]) and again[i]["text"] == a["text"]
    # Evaluation view: the whole clip, the centre 224² of the stored 256² frames.
    raw = ds.dataset.with_format("numpy")[0]
    np.testing.assert_array_equal(first[0]["audio"].numpy(), raw["audio_48k"])
    np.testing.assert_array_equal(
        first[0]["video"].numpy(), raw["frames_224"][:, :, 16:240, 16:240]
    )
    assert PreparedClips(out, "dev", eval_text="first")[0]["text"] == raw["labels"][0]


def test_train_text_labels_draws_among_the_label_names_only(reference):
    corpus, out, config = reference
    texts = PreparedClips(out, "train", train=True)
    labels = PreparedClips(out, "train", train=True, train_text="labels")
    drawn = {"texts": set(), "labels": set()}
    for epoch in range(6):
        texts.set_epoch(epoch)
        labels.set_epoch(epoch)
        for i in range(len(labels)):
            names = {labels.label_names[j] for j in labels.label_ids[i]}
            text = labels[i]["text"]
            assert text in names, (i, text, names)
            drawn["labels"].add(text)
            drawn["texts"].add(texts[i]["text"])
    assert drawn["texts"] - drawn["labels"], "the default draws tags too"
    with pytest.raises(ValueError, match="train_text"):
        PreparedClips(out, "train", train_text="tags")


def test_train_augmentation_replays_per_epoch_and_index(reference):
    corpus, out, config = reference
    kw = dict(train=True, audio_rate=16000, video_size=112, crop_seconds=3.0, seed=5)
    a, b = PreparedClips(out, "train", **kw), PreparedClips(out, "train", **kw)
    a.set_epoch(2)
    b.set_epoch(2)
    x, y = a[1], b[1]
    assert torch.equal(x["audio"], y["audio"]) and torch.equal(x["video"], y["video"])
    assert x["text"] == y["text"] and x["audio"].shape == (3 * 16000,)
    assert torch.equal(b[(2, 1)]["video"], x["video"])  # (epoch, index) keys
    b.set_epoch(3)
    assert not torch.equal(b[1]["video"], x["video"])
    # The 3-s window is a real crop of the clip's audio, at a random offset.
    full = PreparedClips(out, "train", audio_rate=16000, video_size=112)[1]["audio"].numpy()
    win = x["audio"].numpy()
    offsets = [
        o for o in range(len(full) - len(win) + 1) if np.array_equal(full[o : o + len(win)], win)
    ]
    assert offsets, "the window is not a slice of the clip"


def test_audio_and_video_windows_are_synchronous(reference):
    """Cropping 3 s of the clip picks the frames of the same 3 s (centre window in eval)."""
    corpus, out, config = reference
    full = PreparedClips(out, "dev", num_frames=16)
    part = PreparedClips(out, "dev", crop_seconds=2.0, num_frames=8)
    # Clip 4 s, 16 stored frames (0.25 s apart); the centred 2-s window is [1, 3) s, whose
    # 8 frames at 0.25-s spacing are stored frames 4..11.
    np.testing.assert_array_equal(part[0]["video"].numpy(), full[0]["video"][4:12].numpy())
    a = full[0]["audio"].numpy()
    np.testing.assert_array_equal(part[0]["audio"].numpy(), a[48000 : 48000 + 96000])


def test_sampler_never_puts_two_clips_of_a_video_in_a_batch():
    rng = np.random.default_rng(0)
    # Uneven videos: one long video dominates, many have one clip.
    ids = [f"v{int(k)}" for k in rng.integers(0, 30, size=300)] + ["long"] * 40
    for batch_size in (1, 4, 16):
        sampler = VideoBatchSampler(ids, batch_size=batch_size, seed=3)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert len(batches) == len(sampler)
            flat = [i for b in batches for i in b]
            assert sorted(flat) == list(range(len(ids)))  # every clip once
            for b in batches:
                assert len({ids[i] for i in b}) == len(b) <= batch_size
            full = [b for b in batches if len(b) == batch_size]
            assert len(full) >= len(batches) - 45  # only the long video's tail is short
    s1, s2 = VideoBatchSampler(ids, 8, seed=3), VideoBatchSampler(ids, 8, seed=3)
    s1.set_epoch(1)
    s2.set_epoch(1)
    assert list(s1) == list(s2)
    s2.set_epoch(2)
    assert list(s1) != list(s2)
    dropped = VideoBatchSampler(ids, 8, seed=3, drop_last=True)
    assert all(len(b) == 8 for b in dropped)
    paired = VideoBatchSampler(ids, 8, seed=3, yield_epoch=True)
    paired.set_epoch(4)
    assert all(e == 4 for b in paired for e, _ in b)


def test_sampler_on_the_prepared_split(reference):
    corpus, out, config = reference
    ds = PreparedClips(out, "train", modalities=("text",))
    sampler = VideoBatchSampler(ds.video_ids, batch_size=4, seed=0)
    for batch in sampler:
        vids = [ds[i]["video_id"] for i in batch]
        assert len(set(vids)) == len(vids)


def test_from_config_and_clear_errors(reference, tmp_path):
    corpus, out, config = reference
    cfg = DataConfig(prepared_dir=str(out), audio_rate=16000, video_size=112, crop_seconds=2.0)
    ds = PreparedClips.from_config(cfg, "test", train=False)
    item = ds[0]
    assert item["audio"].shape == (32000,) and item["video"].shape == (16, 3, 112, 112)
    with pytest.raises(FileNotFoundError, match="prepare"):
        PreparedClips(tmp_path, "train")
    with pytest.raises(ValueError, match="audio_22k"):
        PreparedClips(out, "test", audio_rate=22000)
    with pytest.raises(ValueError, match="modalities"):
        PreparedClips(out, "test", modalities=("smell",))


def test_a_split_of_the_previous_layout_is_refused_with_how_to_prepare_it_again(tmp_path):
    """``save_to_disk``'s layout (format 2: ``state.json``, float32 audio) and a manifest
    of another format: one line naming the command that prepares the split again."""
    old = tmp_path / "prepared" / "train"
    old.mkdir(parents=True)
    (old / "state.json").write_text("{}")
    (old / "dataset_info.json").write_text("{}")
    with pytest.raises(ValueError, match="older layout") as err:
        PreparedClips(tmp_path / "prepared", "train")
    message = str(err.value)
    assert (
        "\n" not in message and f"data_prep prepare --corpus CORPUS --out {old.parent}" in message
    )
    (old / "split.json").write_text('{"format": 2, "files": []}')
    with pytest.raises(ValueError, match="layout 2, this trimodal reads 3; prepare it again"):
        PreparedClips(tmp_path / "prepared", "train")


def test_resized_frames_stay_uint8_within_half_a_step_of_the_float_resize(reference):
    """A view that needs a resize (here 200² from the 224² centre of the stored 256²
    frames) leaves the worker as uint8: within half a step of the float32 resize that the
    previous layout sent, and exact where no resize is needed (the centre view)."""
    corpus, out, config = reference
    ds = PreparedClips(out, "dev", video_size=200, modalities=("video",))
    got = ds[0]["video"]
    assert got.dtype == torch.uint8 and got.shape == (16, 3, 200, 200)
    stored = ds.dataset.with_format("numpy")[0]["frames_224"]
    crop = torch.from_numpy(stored[:, :, 16:240, 16:240].astype(np.float32)) / 255
    expected = torch.nn.functional.interpolate(
        crop, size=(200, 200), mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 1)
    error = (got.float() / 255 - expected).abs().max().item()
    assert error <= 0.5 / 255 + 1e-6, error
