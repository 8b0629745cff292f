"""Train the line detector's speech model on the corpus dev split (numpy only, deterministic).

    .venv/bin/python -m bench.train_detector            # cross-validate, then write the weights
    .venv/bin/python -m bench.train_detector --no-write # cross-validation report only

Data: the dev split (tests/fixtures/corpus/dev, 61 files) plus remixes made from it: every
clean or 20 dB SNR speech file is mixed with every noise-only file at 0-15 dB SNR (random offset
and gain, re-encoded to mu-law), so that each speaker is seen with each noise; and every
noise-only file but babble starting mid-stream (`noise_onsets`: after digital silence, after a
silent line, or as a step up from the same noise 15-30 dB quieter), so that the model learns
that a noise which started a while ago is not speech.  The first ~2.2 s after such an onset,
while the noise floor catches up, are left out of the loss (`--settling-weight 0`): asking the
model to reject them too made it slow to accept speech after a change of background
(docs/detector.md).
Labels are the corpus `seg` labels.  The `quiet` split is never used here: it is the held-out
test set.  Features are taken exactly as LineDetector.classify takes them (all-zero frames are
skipped and read probability 0).

Model: callflows.detector_model features (36 per frame) -> tanh hidden layer -> logistic output,
an ensemble of a few seeds folded into one hidden layer; Adam, L2, weighted cross-entropy.

Validation: leave-one-speaker-out (noise-only files spread over the folds; remixes of the held-out
speaker or noise file left out) and leave-one-noise-type-out.  The decision values (onset and
hold probability, hangover) are chosen on the speaker-held-out predictions, and written to the
weights file with the cross-validated figures (including the false alarms on the noise-onset
lines of the held-out noise file / type).  Fixed seeds, numpy only: a rerun writes the same file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.detector import FRAME, NOISE_TYPES, Item, fa_group, load_split
from callflows import detector_model
from callflows.detect import FRAME_MS
from callflows.detector_model import FEATURE_NAMES, LEVEL_FLOOR_DBFS, FrameFeatures, SpeechModel

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "callflows" / "detector_weights.json"
CACHE = ROOT / "bench" / "results" / "detector_features.npz"
SEED = 20240611
ONSET_SEED = SEED + 1  # the noise-onset tracks draw from their own generator
SETTLE_FRAMES = 110  # ~2.2 s after a noise onset: the noise floor has not caught up yet
# Noise types whose onsets are trained on.  Not babble: it is other people talking; with its
# onsets in training the speaker-held-out F1 fell (0.905 -> 0.899) and babble lines gained little
# (docs/detector.md).
ONSET_NOISES = ("white", "pink", "hum", "music")
SNRS_DB = (0.0, 5.0, 10.0, 15.0)
STEADY = ("white", "pink", "hum")


@dataclass
class Track:
    """One training stream: features and labels, with what it is made of (for the folds)."""
    name: str
    speaker: str | None
    noise_files: tuple[str, ...]  # noise-only files mixed in
    noise_types: tuple[str, ...]
    group: str | None  # false-alarm group for noise-only / silent files
    level: np.ndarray
    floor: np.ndarray
    X: np.ndarray
    y: np.ndarray
    original: bool  # a corpus file (scored) or a remix (training only)
    fed: np.ndarray  # frames the features saw (LineDetector skips all-zero frames)
    settling: np.ndarray  # non-speech frames within SETTLE_FRAMES of a noise onset

    def probs(self, model: SpeechModel) -> np.ndarray:
        """The model's speech probability per frame, 0 where LineDetector does not ask it."""
        return np.where(self.fed, model.probs(self.X), 0.0)


def extract(pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Levels, noise floors, feature rows and the fed mask, as LineDetector.classify sees them:
    all-zero frames (digital silence) are not fed to the features and read -100 dBFS."""
    feats = FrameFeatures()
    n = len(pcm) // FRAME
    levels, floors = np.full(n, LEVEL_FLOOR_DBFS), np.empty(n)
    rows, fed = np.zeros((n, len(FEATURE_NAMES))), np.zeros(n, dtype=bool)
    for i in range(n):
        frame = pcm[i * FRAME:(i + 1) * FRAME]
        if frame.any():
            levels[i], rows[i] = feats.push(frame)
            fed[i] = True
        floors[i] = feats.noise_floor_dbfs
    return levels, floors, rows, fed


_MU_DECODE = None


def mulaw_roundtrip(x: np.ndarray) -> np.ndarray:
    """Quantise to the nearest mu-law value, as the corpus files are."""
    global _MU_DECODE
    if _MU_DECODE is None:
        from softphone.g711 import ULAW_TO_LINEAR

        _MU_DECODE = np.unique(ULAW_TO_LINEAR.astype(np.float64))
    x = np.clip(x, _MU_DECODE[0], _MU_DECODE[-1])
    idx = np.clip(np.searchsorted(_MU_DECODE, x), 1, len(_MU_DECODE) - 1)
    lo, hi = _MU_DECODE[idx - 1], _MU_DECODE[idx]
    return np.where(x - lo < hi - x, lo, hi).astype(np.int16)


def remixes(dev: list[Item], rng: np.random.Generator) -> list[tuple[str, str, str, str, np.ndarray, np.ndarray]]:
    """(name, speaker, noise file, noise type, pcm, seg) for speech x noise-only combinations."""
    speech = [i for i in dev if i.meta["type"] == "speech" and (i.meta["noise"] == "clean" or i.meta["snr"] == 20)]
    noises = [i for i in dev if i.meta["type"] == "noise"]
    out = []
    for s in speech:
        x = s.pcm.astype(np.float64)
        for z in noises:
            snr = float(rng.choice(SNRS_DB))
            noise = np.resize(np.roll(z.pcm.astype(np.float64), int(rng.integers(len(z.pcm)))), len(x))
            noise_rms = np.sqrt(np.mean(noise ** 2))
            target = 32768.0 * 10 ** ((s.meta["asl_dbfs"] - snr) / 20)
            gain_db = float(rng.uniform(-6.0, 6.0))
            mix = (x + noise * (target / noise_rms)) * 10 ** (gain_db / 20)
            out.append((f"{s.name}+{z.name}@{snr:g}dB", s.meta["speaker"], z.name, z.meta["noise"],
                        mulaw_roundtrip(mix), s.seg))
    return out


def _frames(seconds: float) -> int:
    return int(round(seconds * 1000 / FRAME_MS))


def _quiet_lead(quiet: list[Item], rng: np.random.Generator, seconds: float) -> tuple[Item | None, np.ndarray]:
    """`seconds` of a silent corpus line (hiss, comfort noise, hum at -75..-60 dBFS), or of
    digital silence (the first ticks of a call carry no RTP), before a noise starts."""
    k = int(rng.integers(len(quiet) + 1))
    n = _frames(seconds) * FRAME
    if k == len(quiet):
        return None, np.zeros(n)
    q = quiet[k]
    return q, np.resize(np.roll(q.pcm.astype(np.float64), int(rng.integers(len(q.pcm)))), n)


def noise_onsets(dev: list[Item], rng: np.random.Generator) -> list[Track]:
    """Noise-only lines whose noise starts mid-stream (all frames labelled non-speech).

    For each noise-only file of the ONSET_NOISES types, three leads: 0.2-1 s of digital silence; 1-4 s of a silent line
    (or digital silence); 2-4 s of the same noise 15-30 dB quieter (a caller who walks from a
    quiet room into the street).  Then the whole noise file at its level, +-6 dB."""
    quiet = [i for i in dev if i.meta["type"] == "silent" and i.meta["noise"] != "digital"]
    noises = [i for i in dev if i.meta["type"] == "noise"]
    out = []
    for z in noises:
        if z.meta["noise"] not in ONSET_NOISES:
            continue
        x = np.roll(z.pcm.astype(np.float64), int(rng.integers(len(z.pcm))))
        for how in ("digital", "quiet", "step"):
            gain = 10 ** (float(rng.uniform(-6.0, 6.0)) / 20)
            if how == "digital":
                q, lead = None, np.zeros(_frames(float(rng.uniform(0.2, 1.0))) * FRAME)
            elif how == "quiet":
                q, lead = _quiet_lead(quiet, rng, float(rng.uniform(1.0, 4.0)))
            else:
                q = None
                n = _frames(float(rng.uniform(2.0, 4.0))) * FRAME
                lead = np.resize(np.roll(x, n), n) * gain * 10 ** (-float(rng.uniform(15.0, 30.0)) / 20)
            pcm = mulaw_roundtrip(np.concatenate([lead, x * gain]))
            files = (z.name,) + ((q.name,) if q else ())
            types = (z.meta["noise"],) + ((q.meta["noise"],) if q else ())
            out.append(_track(f"{z.name}+after+{q.name if q else how}", None, files, types, z.meta["noise"],
                              pcm, np.zeros(len(pcm) // FRAME, dtype=bool), onset=len(lead) // FRAME))
    return out


def speech_after_onsets(dev: list[Item], rng: np.random.Generator, per_file: int) -> list[Track]:
    """Speech over a noise that started shortly before: a silent line (or digital silence) for
    1-3 s, then the noise alone for 0-2 s, then a clean or 20 dB SNR speech file with the same
    noise mixed in as in `remixes` (the files open with ~1 s before the first word, so speech
    starts 1-3 s after the noise).  Each speech file with `per_file` noise files, in turn."""
    quiet = [i for i in dev if i.meta["type"] == "silent" and i.meta["noise"] != "digital"]
    speech = [i for i in dev if i.meta["type"] == "speech" and (i.meta["noise"] == "clean" or i.meta["snr"] == 20)]
    noises = [i for i in dev if i.meta["type"] == "noise"]
    out = []
    for j, s in enumerate(speech):
        x = s.pcm.astype(np.float64)
        for k in range(per_file):
            z = noises[(j * per_file + k) % len(noises)]
            q, lead = _quiet_lead(quiet, rng, float(rng.uniform(1.0, 3.0)))
            n_alone = _frames(float(rng.uniform(0.0, 2.0))) * FRAME
            snr = float(rng.choice(SNRS_DB))
            noise = np.resize(np.roll(z.pcm.astype(np.float64), int(rng.integers(len(z.pcm)))), n_alone + len(x))
            noise *= 32768.0 * 10 ** ((s.meta["asl_dbfs"] - snr) / 20) / np.sqrt(np.mean(noise ** 2))
            gain = 10 ** (float(rng.uniform(-6.0, 6.0)) / 20)
            pcm = mulaw_roundtrip(np.concatenate([lead, (np.concatenate([np.zeros(n_alone), x]) + noise) * gain]))
            seg = np.concatenate([np.zeros((len(lead) + n_alone) // FRAME, dtype=bool), s.seg])
            files = (z.name,) + ((q.name,) if q else ())
            types = (z.meta["noise"],) + ((q.meta["noise"],) if q else ())
            if s.meta["noise"] != "clean":
                types += (s.meta["noise"],)
            out.append(_track(f"{s.name}+{z.name}@{snr:g}dB+after+{q.name if q else 'digital'}", s.meta["speaker"],
                              files, types, None, pcm, seg, onset=len(lead) // FRAME))
    return out


def _track(name: str, speaker: str | None, files: tuple[str, ...], types: tuple[str, ...], group: str | None,
           pcm: np.ndarray, seg: np.ndarray, original: bool = False, onset: int | None = None) -> Track:
    level, floor, X, fed = extract(pcm)
    seg = seg[:len(X)]
    settling = np.zeros(len(X), dtype=bool)
    if onset is not None:
        settling[onset:onset + SETTLE_FRAMES] = True
        settling &= ~seg
    return Track(name, speaker, files, types, group, level, floor, X, seg, original, fed, settling)


def build_tracks(dev: list[Item], use_remix: bool, use_onsets: bool = True, speech_onsets: int = 0) -> list[Track]:
    source = Path(detector_model.__file__).read_bytes() + (Path(__file__).read_bytes())
    key = hashlib.sha256(source + bytes([use_remix, use_onsets, speech_onsets])).hexdigest()[:16]
    cached = _load_cache(key)
    if cached is not None:
        return cached
    tracks = []
    for item in dev:
        m = item.meta
        tracks.append(_track(item.name, m["speaker"], (item.name,) if m["type"] == "noise" else (),
                             (m["noise"],), fa_group(item), item.pcm, item.seg, original=True))
    if use_remix:
        rng = np.random.default_rng(SEED)
        for name, speaker, noise_file, noise_type, pcm, seg in remixes(dev, rng):
            base = next(i for i in dev if i.name == name.split("+")[0])
            types = (noise_type,) if base.meta["noise"] == "clean" else (noise_type, base.meta["noise"])
            tracks.append(_track(name, speaker, (noise_file,), types, None, pcm, seg))
    if use_onsets:
        rng = np.random.default_rng(ONSET_SEED)
        tracks += noise_onsets(dev, rng)
        if speech_onsets:
            tracks += speech_after_onsets(dev, rng, per_file=speech_onsets)
    _save_cache(key, tracks)
    return tracks


def _save_cache(key: str, tracks: list[Track]) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    meta = [{k: getattr(t, k) for k in ("name", "speaker", "noise_files", "noise_types", "group", "original")}
            for t in tracks]
    arrays = {}
    for i, t in enumerate(tracks):
        arrays[f"l{i}"], arrays[f"f{i}"], arrays[f"x{i}"], arrays[f"y{i}"] = t.level, t.floor, t.X, t.y
        arrays[f"m{i}"], arrays[f"s{i}"] = t.fed, t.settling
    np.savez_compressed(CACHE, key=key, meta=json.dumps(meta), **arrays)


def _load_cache(key: str) -> list[Track] | None:
    if not CACHE.exists():
        return None
    with np.load(CACHE) as z:
        if str(z["key"]) != key:
            return None
        meta = json.loads(str(z["meta"]))
        return [Track(m["name"], m["speaker"], tuple(m["noise_files"]), tuple(m["noise_types"]), m["group"],
                      z[f"l{i}"], z[f"f{i}"], z[f"x{i}"], z[f"y{i}"].astype(bool), m["original"],
                      z[f"m{i}"].astype(bool), z[f"s{i}"].astype(bool))
                for i, m in enumerate(meta)]


# -- the network ------------------------------------------------------------------------------
def train_mlp(X: np.ndarray, y: np.ndarray, w: np.ndarray, *, hidden: int, epochs: int, l2: float,
              lr: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-6
    Xn = (X - mean) / std
    d = X.shape[1]
    params = [rng.normal(0, 1 / np.sqrt(d), (d, hidden)), np.zeros(hidden),
              rng.normal(0, 1 / np.sqrt(hidden), hidden), np.zeros(1)]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    step, batch, n = 0, 256, len(y)
    for epoch in range(epochs):
        rate = lr * (0.5 * (1 + np.cos(np.pi * epoch / epochs)))  # cosine decay
        order = rng.permutation(n)
        for s in range(0, n, batch):
            j = order[s:s + batch]
            xb, yb, wb = Xn[j], y[j], w[j]
            h = np.tanh(xb @ params[0] + params[1])
            p = 1 / (1 + np.exp(-np.clip(h @ params[2] + params[3][0], -30, 30)))
            g = (p - yb) * wb / wb.sum()
            gh = np.outer(g, params[2]) * (1 - h * h)
            grads = [xb.T @ gh + l2 * params[0], gh.sum(axis=0), h.T @ g + l2 * params[2], np.array([g.sum()])]
            step += 1
            for k in range(4):
                m1[k] = 0.9 * m1[k] + 0.1 * grads[k]
                m2[k] = 0.999 * m2[k] + 0.001 * grads[k] ** 2
                params[k] -= rate * (m1[k] / (1 - 0.9 ** step)) / (np.sqrt(m2[k] / (1 - 0.999 ** step)) + 1e-8)
    return {"mean": mean, "std": std, "w1": params[0], "b1": params[1], "w2": params[2], "b2": float(params[3][0])}


def train_ensemble(X, y, w, *, members: int, **kw) -> dict:
    """Several seeds averaged in logit space, folded into one wider hidden layer."""
    nets = [train_mlp(X, y, w, seed=SEED + k, **kw) for k in range(members)]
    mean, std = nets[0]["mean"], nets[0]["std"]
    return {
        "features": list(FEATURE_NAMES), "mean": mean, "std": std,
        "w1": np.concatenate([n["w1"] for n in nets], axis=1),
        "b1": np.concatenate([n["b1"] for n in nets]),
        "w2": np.concatenate([n["w2"] for n in nets]) / members,
        "b2": float(np.mean([n["b2"] for n in nets])),
    }


def _weight(t: Track, args) -> float:
    if t.original:
        return args.noise_weight if t.group else 1.0
    if t.settling.any():
        return args.onset_weight
    return 1.0


def fit(tracks: list[Track], args) -> SpeechModel:
    X = np.concatenate([t.X[t.fed] for t in tracks])
    y = np.concatenate([t.y[t.fed] for t in tracks]).astype(np.float64)
    w = np.concatenate([np.where(t.settling, args.settling_weight, _weight(t, args))[t.fed] for t in tracks])
    keep = w > 0
    X, y, w = X[keep], y[keep], w[keep]
    weights = train_ensemble(X, y, w, members=args.members, hidden=args.hidden, epochs=args.epochs,
                             l2=args.l2, lr=args.lr)
    return SpeechModel(weights), weights


# -- the decision, exactly as LineDetector takes it --------------------------------------------
def decide(prob: np.ndarray, level: np.ndarray, floor: np.ndarray, onset: float, hold: float, hang: int,
           min_dbfs: float = -65.0, min_snr: float = 3.0) -> np.ndarray:
    out = np.zeros(len(prob), dtype=bool)
    speaking, left = False, 0
    can_start = (prob >= onset) & (level >= min_dbfs) & (level - floor >= min_snr)
    holds = prob >= hold
    for i in range(len(prob)):
        if speaking:
            if holds[i]:
                left = hang
            elif left > 0:
                left -= 1
            else:
                speaking = False
        elif can_start[i]:
            speaking, left = True, hang
        out[i] = speaking
    return out


def evaluate(tracks: list[Track], probs: list[np.ndarray], onset: float, hold: float, hang: int,
             exact: bool = False) -> dict:
    tp = fp = fn = 0
    fa: dict[str, list[int]] = {}
    for t, p in zip(tracks, probs):
        o = decide(p, t.level, t.floor, onset, hold, hang)
        tp += int(np.sum(o & t.y))
        fp += int(np.sum(o & ~t.y))
        fn += int(np.sum(~o & t.y))
        if t.group:
            acc = fa.setdefault(t.group, [0, 0])
            acc[0] += int(o.sum())
            acc[1] += len(o)
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    out = {"P": round(precision, 3), "R": round(recall, 3), "F1": round(f1, 3)}
    out.update({f"FA_{g}": round(100 * a / b, 1) for g, (a, b) in sorted(fa.items())})
    if exact:
        out["_F1"], out["_FA"] = f1, {g: 100 * a / b for g, (a, b) in fa.items()}
    return out


def onset_tracks(tracks: list[Track]) -> list[Track]:
    """The noise-only lines whose noise starts mid-stream (made by `noise_onsets`)."""
    return [t for t in tracks if not t.original and t.group and t.settling.any()]


def onset_false_alarms(tracks: list[Track], probs: list[np.ndarray], onset: float, hold: float, hang: int) -> dict:
    """Share of frames called speech on the noise-onset lines, per noise type: while the noise
    floor settles (the first ~2.2 s after the onset) and after it."""
    acc: dict[str, list[int]] = {}
    for t, p in zip(tracks, probs):
        o = decide(p, t.level, t.floor, onset, hold, hang)
        start, end = int(np.flatnonzero(t.settling)[0]), int(np.flatnonzero(t.settling)[-1]) + 1
        for group in (t.group, "all"):
            a = acc.setdefault(group, [0, 0, 0, 0])
            a[0] += int(o[start:end].sum())
            a[1] += end - start
            a[2] += int(o[end:].sum())
            a[3] += len(o) - end
    return {f"onset_FA_{g}": [round(100 * a[0] / max(1, a[1]), 1), round(100 * a[2] / max(1, a[3]), 1)]
            for g, a in sorted(acc.items())}


def cross_validate(tracks: list[Track], args, by: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Predictions for every corpus file (and every noise-onset line) from a model that never saw
    its speaker / noise file / noise type."""
    originals = [t for t in tracks if t.original]
    onsets = onset_tracks(tracks)
    if by == "speaker":
        speakers = sorted({t.speaker for t in originals if t.speaker})
        fold = {s: k for k, s in enumerate(speakers)}
        noise_only = [t for t in originals if not t.speaker]
        for k, t in enumerate(noise_only):
            fold[t.name] = k % len(speakers)
        n_folds = len(speakers)

        def fold_of(t: Track) -> int:
            return fold[t.speaker or (t.name if t.original else t.noise_files[0])]

        def excluded(t: Track, k: int) -> bool:
            if t.original:
                return fold_of(t) == k
            return t.speaker == speakers[k] or any(fold.get(f) == k for f in t.noise_files)
    else:
        kinds = list(NOISE_TYPES)
        n_folds = len(kinds) + 1  # the last fold: clean speech and digital silence

        def fold_of(t: Track) -> int:
            return kinds.index(t.noise_types[0]) if t.noise_types[0] in kinds else len(kinds)

        def excluded(t: Track, k: int) -> bool:
            if k < len(kinds):
                return kinds[k] in t.noise_types
            base = t.name.split("+")[0]
            return any(o.name == base and fold_of(o) == k for o in originals)

    probs: dict[str, np.ndarray] = {}
    for k in range(n_folds):
        train = [t for t in tracks if not excluded(t, k)]
        model, _ = fit(train, args)
        for t in originals + onsets:
            if fold_of(t) == k:
                probs[t.name] = t.probs(model)
    return [probs[t.name] for t in originals], [probs[t.name] for t in onsets]


def choose_decision(tracks: list[Track], probs: list[np.ndarray]) -> tuple[dict, dict]:
    """Best held-out F1 with no false alarm on silent lines and <= 1 % on steady noise.

    Music and babble are not constrained here: on unseen excerpts no setting keeps them low
    without losing much speech (see docs/detector.md)."""
    best = None
    for onset in (0.5, 0.6, 0.7, 0.8, 0.9):
        for hold in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            if hold > onset:
                continue
            for hang in (0, 1, 2, 3, 4, 6):
                r = evaluate(tracks, probs, onset, hold, hang, exact=True)
                fa = r.pop("_FA")
                excess = sum(max(0.0, fa.get(g, 0.0) - 1.0) for g in STEADY) + fa.get("silent", 0.0)
                key = r.pop("_F1") - 0.05 * excess  # unrounded: rounding first made near-ties first-come
                if best is None or key > best[0]:
                    best = (key, {"onset_prob": onset, "hold_prob": hold, "hangover_frames": hang}, r)
    return best[1], best[2]


def _jsonable(weights: dict) -> dict:
    def clean(v):
        if isinstance(v, np.ndarray):
            return np.round(v, 6).tolist()
        return round(v, 6) if isinstance(v, float) else v

    return {k: clean(v) for k, v in weights.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.train_detector", description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--members", type=int, default=3, help="ensemble size (seeds)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--noise-weight", type=float, default=2.0, help="loss weight of noise-only/silent lines")
    ap.add_argument("--no-remix", action="store_true", help="train on the corpus files only")
    ap.add_argument("--no-onsets", action="store_true", help="leave out the noise-onset tracks")
    ap.add_argument("--speech-onsets", type=int, default=0,
                    help="noise files per speech file mixed in after a noise onset (0: none)")
    ap.add_argument("--onset-weight", type=float, default=1.0,
                    help="loss weight of the tracks with a noise onset (after the settling frames)")
    ap.add_argument("--settling-weight", type=float, default=0.0,
                    help="loss weight of the non-speech frames in the first ~2 s after a noise onset")
    ap.add_argument("--no-cv", action="store_true", help="skip cross-validation (keeps the default decision)")
    ap.add_argument("--no-write", action="store_true", help="do not write callflows/detector_weights.json")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    dev = load_split("dev")
    tracks = build_tracks(dev, use_remix=not args.no_remix, use_onsets=not args.no_onsets,
                          speech_onsets=args.speech_onsets)
    originals = [t for t in tracks if t.original]
    onsets = onset_tracks(tracks)
    print(f"{len(originals)} corpus files, {len(tracks) - len(originals) - len(onsets)} remixes, "
          f"{len(onsets)} noise onsets, {sum(len(t.y) for t in tracks)} frames ({time.perf_counter() - t0:.1f} s)")
    report: dict = {}
    decision = {"onset_prob": 0.7, "hold_prob": 0.5, "hangover_frames": 3}
    if not args.no_cv:
        cv_speaker, cv_onsets = cross_validate(tracks, args, "speaker")
        decision, report["leave_one_speaker_out"] = choose_decision(originals, cv_speaker)
        if onsets:
            report["leave_one_speaker_out"].update(onset_false_alarms(onsets, cv_onsets, **_args(decision)))
        cv_noise, cv_onsets = cross_validate(tracks, args, "noise")
        report["leave_one_noise_type_out"] = evaluate(originals, cv_noise, **_args(decision))
        if onsets:
            report["leave_one_noise_type_out"].update(onset_false_alarms(onsets, cv_onsets, **_args(decision)))
        print("decision:", decision)
        for k, v in report.items():
            print(f"{k}: {v}")
    model, weights = fit(tracks, args)
    report["in_sample_dev"] = evaluate(originals, [t.probs(model) for t in originals], **_args(decision))
    print("in_sample_dev:", report["in_sample_dev"])
    weights.update({
        "decision": decision,
        "trained_on": "tests/fixtures/corpus/dev" + ("" if args.no_remix else " + remixes")
                      + ("" if args.no_onsets else " + noise onsets"),
        "made_by": "python -m bench.train_detector " + " ".join(argv if argv is not None else []),
        "hyper": {k: getattr(args, k) for k in ("hidden", "members", "epochs", "l2", "lr", "noise_weight",
                                                 "onset_weight", "settling_weight", "speech_onsets")},
        "seed": SEED, "validation": report,
    })
    if not args.no_write:
        WEIGHTS.write_text(json.dumps(_jsonable(weights), indent=None, separators=(",", ":")) + "\n",
                           encoding="utf-8")
        print(f"wrote {WEIGHTS.relative_to(ROOT)} ({WEIGHTS.stat().st_size} bytes)")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def _args(decision: dict) -> dict:
    return {"onset": decision["onset_prob"], "hold": decision["hold_prob"], "hang": decision["hangover_frames"]}


if __name__ == "__main__":
    raise SystemExit(main())
