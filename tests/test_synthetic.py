"""The synthetic corpus: deterministic, decodable, labels and per-video variation in the media."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from trimodal.prepare.corpus import MUSIC45_LABELS, read_corpus, record_problems
from trimodal.prepare.synthetic import (
    SynthOptions,
    generate_corpus,
    plan_video,
    render_frames,
    synth_audio,
)

OPTS = SynthOptions(min_seconds=6.0, max_seconds=8.0)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_media(tmp_path: Path):
    a = generate_corpus(tmp_path / "a", 3, seed=5, opts=OPTS)
    b = generate_corpus(tmp_path / "b", 3, seed=5, opts=OPTS, workers=2)
    c = generate_corpus(tmp_path / "c", 3, seed=6, opts=OPTS)
    assert a == b
    assert (tmp_path / "a" / "videos.jsonl").read_bytes() == (
        tmp_path / "b" / "videos.jsonl"
    ).read_bytes()
    for ra in a:
        assert _digest(tmp_path / "a" / ra.media) == _digest(tmp_path / "b" / ra.media)
    assert {_digest(tmp_path / "a" / r.media) for r in a}.isdisjoint(
        _digest(tmp_path / "c" / r.media) for r in c
    )
    # A video depends on (seed, index) only: a larger corpus starts with the same videos.
    d = generate_corpus(tmp_path / "d", 4, seed=5, opts=OPTS)
    assert d[:3] == a


def test_files_decode_with_video_and_audio_streams(tmp_path: Path):
    import av

    from trimodal.media import open_media

    records = generate_corpus(tmp_path, 2, seed=1, opts=OPTS)
    assert read_corpus(tmp_path) == records
    for r in records:
        assert record_problems(r, tmp_path) == []
        assert 1 <= len(r.labels) <= 3 and set(r.labels) <= set(MUSIC45_LABELS)
        assert r.tags and r.title and r.published_at
        path = str(r.media_path(tmp_path))
        with av.open(path) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert c.streams.audio[0].codec_context.name == "aac"
        with open_media(path, rates=[16000], decoder="pyav") as media:
            assert media.frames_at(np.array([0.0]), None).shape == (1, OPTS.height, OPTS.width, 3)
            assert media.info.video_s == pytest.approx(r.duration_s, abs=0.1)
            assert media.info.audio_s == pytest.approx(r.duration_s, abs=0.15)
            audio = media.audio_at(16000, 0, int(media.info.audio_s * 16000))
        assert 0.05 < np.abs(audio).max() <= 1.0


def test_labels_cover_the_vocabulary_and_multiword_labels_occur():
    labels = [x for i in range(400) for x in plan_video(0, i, OPTS).labels]
    assert len(set(labels)) >= 40
    assert any(" " in x for x in labels)


def test_audio_and_video_both_follow_the_beat():
    """Sound and picture pulse on the same beats: per-video tempo and phase are in both."""
    opts = SynthOptions(min_seconds=12.0, max_seconds=12.0, fps=12)
    for index in range(3):
        plan = plan_video(3, index, opts)
        frames = render_frames(plan, opts).astype(np.float32)
        brightness = frames.mean(axis=(1, 2, 3))
        t = np.arange(len(frames)) / opts.fps
        since = np.mod(t - plan.beat_phase, 60.0 / plan.bpm)
        on_beat = since < 0.5 / opts.fps
        off_beat = since > 0.5 * 60.0 / plan.bpm
        assert brightness[on_beat].mean() > brightness[off_beat].mean() + 1.0
        # The sound's envelope is locked to the same beat: its energy, folded by beat
        # phase, is far from flat (attacks and decays restart on every beat).
        audio = synth_audio(plan, opts)
        ta = np.arange(len(audio)) / opts.sample_rate
        phase = np.mod(ta - plan.beat_phase, 60.0 / plan.bpm) * plan.bpm / 60.0
        bins = np.minimum((phase * 8).astype(int), 7)
        energy = np.array([np.mean(audio[bins == k] ** 2) for k in range(8)])
        assert energy.max() > 2 * energy.min()


def test_instruments_of_one_family_sound_different():
    """Each label has its own noise band, fixed in frequency: two instruments of one family
    playing the same melody in the same key differ around their bands (what lets the audio
    channel tell labels apart, not only families). Where the melody's own harmonics are loud
    in a band the difference is small, so the test takes the median over the families."""
    import dataclasses

    from trimodal.prepare.synthetic import FAMILIES, label_style

    opts = SynthOptions(min_seconds=4.0, max_seconds=4.0)
    plan = plan_video(2, 0, opts)
    freqs = np.fft.rfftfreq(int(round(plan.duration_s * opts.sample_rate)), 1 / opts.sample_rate)
    ratios = []
    for labels in FAMILIES.values():
        by_band = sorted(labels, key=lambda label: label_style(label).noise_hz)
        low, high = by_band[0], by_band[-1]
        power = {}
        for label in (low, high):
            audio = synth_audio(dataclasses.replace(plan, labels=[label]), opts)
            power[label] = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
        for label, other in ((low, high), (high, low)):
            centre = label_style(label).noise_hz
            band = (freqs > centre * 2**-0.25) & (freqs < centre * 2**0.25)
            ratios.append(power[label][band].sum() / power[other][band].sum())
    # Measured: median 42 (without the noise bands: 1.1).
    assert np.median(ratios) > 8, ratios


def test_picture_shows_the_register_timbre_and_loudness_that_are_heard():
    """The strong audio-visual link the demo learns: per clip, the background's red − blue
    follows the pitch (register and melody), its green the timbre brightness (measured in the
    audio as the upper harmonics' share) and its overall level the audio's loudness (RMS)."""
    import librosa

    from trimodal.prepare.synthetic import _beat_clock, _midi_of

    opts = SynthOptions(min_seconds=4.0, max_seconds=4.0)
    rows = []
    for index in range(16):
        plan = plan_video(7, index, opts)
        frames = render_frames(plan, opts).astype(np.float32) / 255.0
        audio = synth_audio(plan, opts).astype(np.float64)
        power = np.abs(librosa.stft(audio, n_fft=4096)) ** 2
        freqs = librosa.fft_frequencies(sr=opts.sample_rate, n_fft=4096)[:, None]
        times = librosa.frames_to_time(np.arange(power.shape[1]), sr=opts.sample_rate, n_fft=4096)
        f0 = 440.0 * 2.0 ** ((_midi_of(plan, plan.melody[_beat_clock(plan, times)[0]]) - 69) / 12)
        low = power * ((freqs > 0.8 * f0) & (freqs < 2.5 * f0))
        high = power * ((freqs > 3.5 * f0) & (freqs < 16.5 * f0))
        t = np.arange(len(frames)) / opts.fps
        pitch = _midi_of(plan, plan.melody[_beat_clock(plan, t)[0]]).mean()
        rows.append(
            (
                pitch,
                np.median(frames[..., 0] - frames[..., 2]),
                np.log(high.sum() / low.sum()),
                np.median(frames[..., 1] - (frames[..., 0] + frames[..., 2]) / 2),
                np.log(np.sqrt(np.mean(audio**2))),
                frames.mean(),
            )
        )
    r = np.corrcoef(np.array(rows).T)
    assert r[0, 1] > 0.9  # pitch ↔ red − blue
    assert r[2, 3] > 0.6  # upper harmonics ↔ green
    assert r[4, 5] > 0.8  # loudness ↔ picture level


def test_rejects_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError):
        generate_corpus(tmp_path, 0)
    with pytest.raises(ValueError):
        generate_corpus(tmp_path, 1, opts=SynthOptions(min_seconds=5, max_seconds=2))
