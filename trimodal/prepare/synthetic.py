"""A synthetic music-video corpus: real H.264 + AAC MP4 files that behave like music videos.

``python -m data_prep synthetic --out DIR --videos N [--seed S]`` (or
:func:`generate_corpus`) writes a raw corpus (:mod:`trimodal.prepare.corpus` layout) with
``N`` short videos. What makes it a useful test bed:

* **labels** (1–3 per video) are drawn from the 45 music labels, frequent labels more often,
  extra labels preferably from the same instrument family;
* **audio** is synthesised from the labels: each label is an instrument voice with its own
  timbre (harmonic profile, envelope, vibrato), its own noise band (breath, bow, pick, snare
  or cymbal noise at a label-specific frequency, the same whatever the video's key, so that
  the instruments of one family sound different too) and its own rhythm (1–4 notes a beat);
  percussion labels add drums; every video has its own **tempo, beat phase, key, scale and
  melody**;
* **video** shows one visual element per label (shape family, colour and texture depend on
  the label) whose motion follows the audio: elements pulse with the beat envelope, a marker
  follows the melody's pitch, stripes move at the tempo; the background's colour is the
  sound made visible: red − blue follows the pitch (the video's register and, a little, the
  current note), green the timbre's brightness (how strong the upper harmonics are) and
  the overall level the loudness;
* **text**: tags (multi-word ones included), a title, a publication date.

The label determines *what* is heard and seen, the per-video variation *how* and *when*:
matching a clip's audio to its own video (rather than any video with the same labels) needs
the register, timbre brightness, loudness, melody, tempo and beat phase, which are in both
streams. Register, brightness and loudness are deliberately strong and linear (a wide pitch
range, a picture-wide colour), so that even thumbnail-size frames and small models learn the
audio↔video link; beat and melody are finer cues for stronger models.

Generation is deterministic: a video depends only on ``(seed, its index)``, so a corpus of
``N + M`` videos starts with the same ``N`` videos, and the bytes are reproducible (x264 is
run single-threaded with the ultrafast preset).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import zlib
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np

from trimodal.prepare.corpus import MUSIC45_LABELS, VideoRecord, write_corpus
from trimodal.utils import atomic_path

# Instrument family of each label: decides how the label sounds and which shape it draws.
FAMILIES: dict[str, tuple[str, ...]] = {
    "plucked": (
        "Guitar",
        "String instrument",
        "Acoustic guitar",
        "Electric guitar",
        "Banjo",
        "Flamenco",
        "Guitar Hero",
        "Guitar amplifier",
        "Musician",
    ),
    "bowed": ("Violin", "Viola", "Cello", "Fiddle", "Quartet", "Orchestra"),
    "keys": ("Piano", "Pianist", "Musical keyboard", "Electronic keyboard", "Organ (music)"),
    "drums": ("Drum kit", "Drum", "Drummer", "Snare drum", "Cymbal", "Drum stick", "Marching band"),
    "wind": (
        "Saxophone",
        "Tenor saxophone",
        "Trumpet",
        "Trombone",
        "Brass instrument",
        "Flute",
        "Clarinet",
        "Harmonica",
        "Bagpipes",
        "Accordion",
        "Diatonic button accordion",
    ),
    "voice": ("Choir", "Musical ensemble", "Concert", "Music festival"),
    "electronic": ("Disc jockey", "Mixtape", "Music video"),
}
FAMILY_OF: dict[str, str] = {label: fam for fam, labels in FAMILIES.items() for label in labels}
assert set(FAMILY_OF) == set(MUSIC45_LABELS), "every music label needs a family"

FAMILY_TAGS: dict[str, tuple[str, ...]] = {
    "plucked": ("guitar cover", "rock", "fingerstyle", "unplugged", "guitar solo", "blues"),
    "bowed": ("classical music", "string quartet", "violin cover", "baroque", "symphony"),
    "keys": ("piano cover", "jazz", "keyboard", "ballad", "piano solo", "synth"),
    "drums": ("drum cover", "drum solo", "percussion", "groove", "marching", "beat"),
    "wind": ("jazz", "brass band", "big band", "smooth jazz", "folk", "wind ensemble"),
    "voice": ("live", "choir music", "festival", "live performance", "a cappella"),
    "electronic": ("edm", "remix", "dj set", "house music", "official video", "electronic music"),
}
GENERIC_TAGS = ("music", "hd", "live", "cover", "new song", "official", "2012", "lyrics")
_TITLE_A = ("Midnight", "Golden", "Electric", "Silent", "Wild", "Blue", "Broken", "Endless")
_TITLE_B = ("River", "Heart", "Summer", "Road", "Dream", "Fire", "Night", "Echo")
_ARTIST_A = ("The", "DJ", "Los", "Little", "Big", "Saint")
_ARTIST_B = ("Foxes", "Lanterns", "Comets", "Rivers", "Owls", "Pilots", "Tigers")


@dataclasses.dataclass
class SynthOptions:
    """Size and length of the generated media.

    Defaults keep generation cheap: 160×120 at 12 fps and 22.05 kHz mono, 20–40 s per video.
    """

    min_seconds: float = 20.0
    max_seconds: float = 40.0
    fps: int = 12
    width: int = 160
    height: int = 120
    sample_rate: int = 22050
    crf: int = 23


def _label_rng(label: str) -> np.random.Generator:
    # Label traits must not depend on the corpus seed: the same label sounds and looks the
    # same in every synthetic corpus, so a model trained on one seed transfers to another.
    return np.random.default_rng(zlib.crc32(label.encode("utf-8")))


@dataclasses.dataclass
class _LabelStyle:
    family: str
    harmonics: np.ndarray  # amplitudes of harmonics 1..8
    noise_hz: float  # centre of its noise band (breath, bow, pick, snare or cymbal)
    notes_per_beat: int  # how the instrument subdivides the beat
    attack: float
    decay: float
    vibrato: float
    colour: np.ndarray  # RGB in [0, 1]
    texture: float  # spatial frequency of the label's pattern


def label_style(label: str) -> _LabelStyle:
    """The (seed-independent) audio-visual traits of one label."""
    rng = _label_rng(label)
    family = FAMILY_OF[label]
    slope = {"plucked": 1.2, "bowed": 0.7, "keys": 1.5, "drums": 2.0, "wind": 0.5}.get(family, 1.0)
    # The family sets the spectral slope; each label weights its harmonics its own way.
    harmonics = (np.arange(1, 9) ** -slope) * rng.uniform(0.05, 1.0, 8) ** 2
    if family == "wind" and rng.random() < 0.5:
        harmonics[1::2] *= 0.15  # clarinet-like: odd harmonics dominate
    attack, decay = {
        "plucked": (0.005, 0.35),
        "bowed": (0.12, 2.0),
        "keys": (0.004, 0.6),
        "drums": (0.002, 0.12),
        "wind": (0.06, 1.5),
        "voice": (0.15, 3.0),
        "electronic": (0.01, 0.25),
    }[family]
    idx = MUSIC45_LABELS.index(label)
    hue = (idx * 0.618034) % 1.0
    colour = _hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.75, 1.0))
    return _LabelStyle(
        family=family,
        harmonics=harmonics / harmonics.sum(),
        # Log-uniform over 400 Hz – 5 kHz: 45 bands a quarter octave wide overlap their
        # neighbours, as real instruments' noises do, yet most label pairs are told apart.
        noise_hz=float(2.0 ** rng.uniform(np.log2(400), np.log2(5000))),
        notes_per_beat=int(rng.choice([1, 2, 3, 4])),
        attack=attack * rng.uniform(0.7, 1.4),
        decay=decay * rng.uniform(0.7, 1.4),
        vibrato=float(rng.uniform(0.0, 0.01)) if family in ("bowed", "voice", "wind") else 0.0,
        colour=colour,
        texture=float(rng.uniform(0.08, 0.3)),
    )


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


@dataclasses.dataclass
class VideoPlan:
    """Everything random about one synthetic video (drawn from ``(seed, index)``)."""

    video_id: str
    labels: list[str]
    tags: list[str]
    title: str
    published_at: str
    n_frames: int
    duration_s: float
    bpm: float
    beat_phase: float  # seconds until the first beat
    root_midi: int  # the register: lowest note of the melody's range
    scale: tuple[int, ...]
    melody: np.ndarray  # scale degree per beat
    brightness: float  # timbre brightness in [0, 1]: tilt of the harmonic spectrum
    loudness: float  # in [0, 1]: the mix's level, an RMS from -36 to -16 dBFS
    seed: tuple[int, int]


# Bump when the media (or plans) generated for a given (seed, index) change: records carry
# it, so that a cached corpus from another version is regenerated rather than reused.
GENERATOR_VERSION = 3

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_LOWEST_ROOT, _HIGHEST_ROOT = 40, 72  # MIDI: E2 .. C5
_MELODY_DEGREES = 10  # a melody moves over ten scale degrees above its root


def plan_video(seed: int, index: int, opts: SynthOptions) -> VideoPlan:
    """Draw the labels, text and musical parameters of video ``index`` of corpus ``seed``."""
    rng = np.random.default_rng([seed, index])
    # Zipf-like label frequencies: the study's labels are ordered by frequency.
    weights = 1.0 / (np.arange(len(MUSIC45_LABELS)) + 4.0)
    first = MUSIC45_LABELS[rng.choice(len(MUSIC45_LABELS), p=weights / weights.sum())]
    labels = [first]
    n_labels = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    while len(labels) < n_labels:
        if rng.random() < 0.6:
            pool = [x for x in FAMILIES[FAMILY_OF[first]] if x not in labels]
        else:
            pool = [x for x in MUSIC45_LABELS if x not in labels]
        if not pool:
            break
        labels.append(pool[int(rng.integers(len(pool)))])

    duration = float(rng.uniform(opts.min_seconds, opts.max_seconds))
    n_frames = max(1, int(round(duration * opts.fps)))
    bpm = float(rng.uniform(70, 160))
    beat = 60.0 / bpm
    n_beats = int(np.ceil(n_frames / opts.fps / beat)) + 2
    # Melody: a bounded random walk over scale degrees.
    steps = rng.choice([-2, -1, 0, 1, 2, 3], size=n_beats, p=[0.15, 0.25, 0.2, 0.25, 0.1, 0.05])
    melody = np.clip(np.cumsum(steps) + 3, 0, _MELODY_DEGREES - 1)

    fams = {FAMILY_OF[x] for x in labels}
    tags: list[str] = []
    for fam in sorted(fams):
        pool = FAMILY_TAGS[fam]
        tags.extend(pool[int(i)] for i in rng.choice(len(pool), size=2, replace=False))
    tags.append(GENERIC_TAGS[int(rng.integers(len(GENERIC_TAGS)))])
    if bpm < 90:
        tags.append("slow song")
    elif bpm > 135:
        tags.append("upbeat")
    tags = list(dict.fromkeys(tags))

    artist = f"{_ARTIST_A[int(rng.integers(6))]} {_ARTIST_B[int(rng.integers(7))]}"
    song = f"{_TITLE_A[int(rng.integers(8))]} {_TITLE_B[int(rng.integers(8))]}"
    title = f"{artist} - {song} ({labels[0].lower()})"
    day0 = _dt.date(2006, 1, 1)
    published = day0 + _dt.timedelta(days=int(rng.integers(0, 11 * 365)))
    # A wide register (over two octaves of roots), a timbre brightness and a loudness: the
    # three strong audio-visual variables (see synth_audio and render_frames).
    root_midi = int(rng.integers(_LOWEST_ROOT, _HIGHEST_ROOT + 1))
    minor = bool(rng.random() < 0.5)
    brightness = float(rng.uniform(0.0, 1.0))
    loudness = float(rng.uniform(0.0, 1.0))
    return VideoPlan(
        video_id=f"synth{seed}_{index:05d}",
        labels=labels,
        tags=tags,
        title=title,
        published_at=published.isoformat(),
        n_frames=n_frames,
        duration_s=n_frames / opts.fps,
        bpm=bpm,
        beat_phase=float(rng.uniform(0, beat)),
        root_midi=root_midi,
        scale=_MINOR if minor else _MAJOR,
        melody=melody,
        brightness=brightness,
        loudness=loudness,
        seed=(seed, index),
    )


def _beat_clock(plan: VideoPlan, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beat index and time since that beat (seconds) at times ``t``."""
    beat = 60.0 / plan.bpm
    rel = t - plan.beat_phase
    idx = np.floor(rel / beat).astype(np.int64)
    since = rel - idx * beat
    # Before the first beat: count it as beat -1 → melody note 0.
    return np.clip(idx + 1, 0, len(plan.melody) - 1), since


def _midi_of(plan: VideoPlan, degree: np.ndarray) -> np.ndarray:
    scale = np.asarray(plan.scale)
    return plan.root_midi + 12 * (degree // 7) + scale[degree % 7]


def _band_noise(rng: np.random.Generator, n: int, centre_hz: float, sr: int) -> np.ndarray:
    """Unit-RMS noise [n] in a band a quarter octave wide (one standard deviation) around
    ``centre_hz``."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freq = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 1.0)
    spectrum *= np.exp(-0.5 * (np.log2(freq / centre_hz) / 0.25) ** 2)
    noise = np.fft.irfft(spectrum, n)
    return noise / max(float(noise.std()), 1e-9)


def synth_audio(plan: VideoPlan, opts: SynthOptions) -> np.ndarray:
    """The soundtrack: float32 mono waveform [duration_s * sample_rate] in [-1, 1]."""
    sr = opts.sample_rate
    n = int(round(plan.duration_s * sr))
    t = np.arange(n) / sr
    beat_idx, since = _beat_clock(plan, t)
    midi = _midi_of(plan, plan.melody[beat_idx]).astype(np.float64)
    rng = np.random.default_rng([*plan.seed, 1])
    out = np.zeros(n)
    # A soft click on every beat: the beat is audible whatever the labels.
    out += 0.15 * np.exp(-since / 0.01) * rng.standard_normal(n)
    freq = 440.0 * 2.0 ** ((midi - 69) / 12.0)
    # A lead voice plays the melody in every video (drum-only ones included), so register
    # and timbre brightness are always heard: brightness sets how far its harmonic series
    # reaches, from nearly a sine (k^-3.5) to a buzzy, reedy tone (k^-0.3) over 16 partials.
    lead_phase = 2 * np.pi * np.cumsum(freq) / sr
    partials = np.arange(1, 17) ** -(3.5 - 3.2 * plan.brightness)
    lead = sum(a * np.sin(k * lead_phase) for k, a in enumerate(partials / partials.sum(), 1))
    out += 0.8 * lead * np.exp(-since / 0.2)
    # … and it tilts every instrument's own harmonic spectrum the same way.
    tilt = np.arange(1, 9) ** (4.0 * (plan.brightness - 0.5))
    for label in plan.labels:
        style = label_style(label)
        harmonics = style.harmonics * tilt
        harmonics /= harmonics.sum()
        if style.family == "drums":
            kick_f = 55 + 30 * np.exp(-since / 0.03)
            kick = np.sin(2 * np.pi * np.cumsum(kick_f) / sr) * np.exp(-since / style.decay)
            # Snare/cymbal noise in the label's band on the off-beat.
            half = 30.0 / plan.bpm
            off = np.mod(since - half, 60.0 / plan.bpm)
            noise = _band_noise(rng, n, style.noise_hz, sr) * np.exp(-off / (style.decay * 0.8))
            out += 0.6 * kick + 0.3 * noise
            continue
        voice_freq = freq
        if style.vibrato:
            voice_freq = freq * (1 + style.vibrato * np.sin(2 * np.pi * 5.5 * t))
        phase = 2 * np.pi * np.cumsum(voice_freq) / sr
        tone = sum(a * np.sin(k * phase) for k, a in enumerate(harmonics, start=1))
        if style.family == "electronic":
            tone = np.tanh(4 * tone)  # distorted, square-ish synth
        # The label's rhythm: notes_per_beat notes a beat, the first one accented, so that
        # the sound still pulses on the beat the picture shows.
        note_s = 60.0 / plan.bpm / style.notes_per_beat
        note = np.mod(since, note_s)
        accent = np.where(since < note_s, 1.0, 0.5)
        env = accent * np.minimum(note / style.attack, 1.0) * np.exp(-note / style.decay)
        # Tone and noise band share the envelope: the noise is the instrument's own (breath,
        # bow, pick), in a band that does not move with the melody or the key.
        out += (0.5 * tone + 0.2 * _band_noise(rng, n, style.noise_hz, sr)) * env
    # The video's level, a loudness to see: the RMS is set to -36 .. -16 dBFS, and a soft
    # limiter keeps the rare peaks inside full scale.
    rms = max(float(np.sqrt(np.mean(out**2))), 1e-9)
    out *= 10.0 ** ((-36.0 + 20.0 * plan.loudness) / 20.0) / rms
    return np.tanh(out).astype(np.float32)


def render_frames(plan: VideoPlan, opts: SynthOptions) -> np.ndarray:
    """The picture: uint8 frames [n_frames, height, width, 3]."""
    H, W, fps = opts.height, opts.width, opts.fps
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    yn, xn = y / H, x / W
    t = np.arange(plan.n_frames) / fps
    beat_idx, since = _beat_clock(plan, t)
    beats_float = (t - plan.beat_phase) * plan.bpm / 60.0
    pulse = np.exp(-since / 0.12)  # 1 on the beat, decays like the audio's envelope
    degree = plan.melody[beat_idx]
    # The background colour is the sound made visible, picture-wide so that it survives
    # thumbnail sizes, and linear in what is heard: the pitch moves it from blue (low) to
    # red (high) — mostly the video's register, a little the current note, so that four
    # frames of a clip agree on it — the timbre's brightness adds green and the mix's
    # loudness adds white.
    register = (plan.root_midi - _LOWEST_ROOT) / (_HIGHEST_ROOT - _LOWEST_ROOT)
    warmth = 0.8 * register + 0.2 * degree / (_MELODY_DEGREES - 1)
    green = 0.1 + 0.6 * plan.brightness
    white = 0.35 * plan.loudness
    styles = [label_style(label) for label in plan.labels]
    n = len(styles)
    frames = np.empty((plan.n_frames, H, W, 3), np.uint8)
    for f in range(plan.n_frames):
        img = np.empty((H, W, 3), np.float32)
        bg = 0.6 * np.array([0.1 + 0.8 * warmth[f], green, 0.9 - 0.8 * warmth[f]]) + white
        img[:] = bg * (0.7 + 0.3 * yn[..., None]) * (1.0 + 0.35 * pulse[f])
        p, b = float(pulse[f]), float(beats_float[f])
        for i, s in enumerate(styles):
            # Each label owns a vertical band of the picture.
            cx, half = (i + 0.5) / n, 0.5 / n
            inside = np.abs(xn - cx) < half * 0.9
            if s.family == "drums":
                r = 0.12 + 0.12 * p
                mask = (xn - cx) ** 2 + ((yn - 0.5) * H / W) ** 2 < r * r
            elif s.family == "plucked":
                wob = 0.02 * p * np.sin(yn * 25 + b * 6.28)
                mask = inside & (np.abs(np.mod((xn + wob) / s.texture, 1.0) - 0.5) < 0.12)
            elif s.family == "keys":
                key = (degree[f] % 14) / 14.0
                kx = cx - half + 2 * half * key
                mask = (yn > 0.7) & inside & (np.mod(xn / (s.texture * 0.5), 1.0) < 0.8)
                mask |= (yn > 0.55) & (np.abs(xn - kx) < 0.04)
            elif s.family == "bowed":
                ang = 2 * np.pi * b / 4
                u = (xn - cx) * np.cos(ang) + (yn - 0.5) * np.sin(ang)
                v = -(xn - cx) * np.sin(ang) + (yn - 0.5) * np.cos(ang)
                mask = (u / (half * 0.8)) ** 2 + (v / 0.12) ** 2 < 1
            elif s.family == "wind":
                mask = inside & (np.sin((xn + yn) / s.texture * 6.28 - b * 3.14) > 0.5)
            elif s.family == "voice":
                blob = np.exp(-((xn - cx) ** 2 + (yn - 0.45) ** 2) / (0.01 + 0.02 * p))
                img += blob[..., None] * s.colour * 0.9
                continue
            else:  # electronic: a checkerboard that inverts on every beat
                chk = (np.floor(xn / s.texture) + np.floor(yn / s.texture) + beat_idx[f]) % 2
                mask = inside & (chk > 0)
            img[mask] = s.colour * (0.6 + 0.4 * p)
        # The melody marker: its height is the current note's pitch.
        my = 0.85 - 0.05 * (degree[f] % 14)
        mx = np.mod(b, 1.0)
        img[(np.abs(yn - my) < 0.03) & (np.abs(xn - mx) < 0.03)] = 1.0
        frames[f] = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    return frames


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, opts: SynthOptions) -> None:
    """Encode ``frames`` (uint8 [N, H, W, 3]) and ``audio`` (float32 [S]) as H.264 + AAC MP4.

    Written to a temporary file and renamed, so an interrupted run leaves no partial file.
    """
    import av

    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as container:
            vs = container.add_stream("libx264", rate=opts.fps)
            vs.width, vs.height = opts.width, opts.height
            vs.pix_fmt = "yuv420p"
            # Byte-identical output for a given seed needs one thread and the ultrafast
            # preset: with "veryfast" x264's output varied from run to run here.
            vs.options = {"preset": "ultrafast", "crf": str(opts.crf), "threads": "1"}
            vs.codec_context.thread_count = 1
            aus = container.add_stream("aac", rate=opts.sample_rate)
            aus.layout = "mono"
            for i, frame in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                # Explicit timestamps: left unset, the encoder's output varies between calls.
                vf.pts, vf.time_base = i, Fraction(1, opts.fps)
                for packet in vs.encode(vf):
                    container.mux(packet)
            for packet in vs.encode():
                container.mux(packet)
            hop = 1024
            for i in range(0, len(audio), hop):
                af = av.AudioFrame.from_ndarray(
                    audio[None, i : i + hop], format="fltp", layout="mono"
                )
                af.sample_rate, af.pts = opts.sample_rate, i
                for packet in aus.encode(af):
                    container.mux(packet)
            for packet in aus.encode():
                container.mux(packet)


def generate_video(out_dir: Path, seed: int, index: int, opts: SynthOptions) -> VideoRecord:
    """Generate video ``index`` into ``out_dir/media`` and return its corpus record."""
    plan = plan_video(seed, index, opts)
    media = f"media/{plan.video_id}.mp4"
    write_mp4(Path(out_dir) / media, render_frames(plan, opts), synth_audio(plan, opts), opts)
    return VideoRecord(
        video_id=plan.video_id,
        media=media,
        labels=plan.labels,
        tags=plan.tags,
        title=plan.title,
        published_at=plan.published_at,
        duration_s=round(plan.duration_s, 3),
        extra={
            "source": "synthetic",
            "generator_version": GENERATOR_VERSION,
            "bpm": round(plan.bpm, 3),
            "beat_phase_s": round(plan.beat_phase, 4),
            "root_midi": plan.root_midi,
        },
    )


def generate_corpus(
    out_dir: str | Path,
    n_videos: int,
    seed: int = 0,
    opts: SynthOptions | None = None,
    workers: int = 1,
    progress: bool = True,
) -> list[VideoRecord]:
    """Write a synthetic raw corpus of ``n_videos`` videos to ``out_dir`` and return its
    records (with a progress bar on stderr unless not ``progress``)."""
    from tqdm.auto import tqdm

    if n_videos < 1:
        raise ValueError(f"n_videos must be >= 1, got {n_videos}")
    opts = opts or SynthOptions()
    if not 0 < opts.min_seconds <= opts.max_seconds:
        raise ValueError("need 0 < min_seconds <= max_seconds")
    out_dir = Path(out_dir)
    (out_dir / "media").mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=n_videos, desc="synthetic videos", unit="video", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(generate_video, out_dir, seed, i, opts) for i in range(n_videos)]
            for future in futures:
                future.add_done_callback(lambda _: bar.update(1))
            records = [f.result() for f in futures]
    else:
        records = []
        for i in range(n_videos):
            records.append(generate_video(out_dir, seed, i, opts))
            bar.update(1)
    bar.close()
    write_corpus(out_dir, records)
    return records
