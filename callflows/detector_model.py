"""Frame features and the small speech model behind the line detector (R6, R7, R8).

`FrameFeatures` turns each 20 ms frame (160 int16 samples at 8 kHz) into 36 causal features
(`FEATURE_NAMES`), from a 40 ms Hann window (this frame and the previous one), 512-point FFT:

- energy relative to a running noise floor (minimum statistics per FFT bin, ~1.9 s): four
  sub-band SNRs over 250-3750 Hz, the whole-band SNR, and the mean per-bin SNR and share of bins
  6 dB above the floor (narrowband noise such as 50 Hz hum spoils only a few bins);
- spectral flatness, zero-crossing rate, spectral centroid of the noise-subtracted bands;
- periodicity: the normalised autocorrelation peak at 2.5-16 ms lags, of the raw spectrum and of
  the noise-subtracted one (steady hum is subtracted, a voice is not);
- change: spectral flux (12 bands), band-shape similarity with 80 ms ago ("sustain"), and
  spectral-peak persistence over 60 ms (held notes and hum persist, speech harmonics glide);
- level against its own running 20th/80th percentiles and a decaying peak; the 20th percentile
  is held no lower than 3 dB under the quietest frame of the last ~2 s, so that a noise which
  starts mid-call is not taken for a talker once the noise floor has caught up;
- running averages over 60 ms to 1.2 s: SNR, periodicity, flux, sustain, voiced share, voicing
  switches, low-energy share, level standard deviation, and 4 Hz (syllabic) level modulation.

When the background changes (the noise floor jumps by more than 10 dB from one 16-frame block to
the next and no frame of the last ~2 s lies more than 6 dB below the new floor: a step to a steady
noise, not speech, which dips), the SNR averages, the slow level statistics and the 80th
percentile start again from the present instead of remembering the old background.

`SpeechModel` is a one-hidden-layer perceptron over those features, trained by
`bench/train_detector.py` on the corpus dev split; its weights live in detector_weights.json.
Pure numpy; time is counted in frames only.
"""
from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np

RATE = 8000
FRAME = 160  # 20 ms
_WIN = 320  # analysis window: this frame and the previous one
_NFFT = 512
_NBIN = _NFFT // 2 + 1
_EDGES_HZ = (250, 400, 550, 700, 900, 1100, 1350, 1650, 2000, 2400, 2850, 3300, 3750)
_NBAND = len(_EDGES_HZ) - 1
_BROAD = (0, 3, 6, 9)  # 250-700, 700-1350, 1350-2400, 2400-3750 Hz, from the bands above
_LAG_MIN, _LAG_MAX = 20, 128  # 2.5 ms .. 16 ms pitch periods
_TINY = 1e-12
LEVEL_FLOOR_DBFS = -100.0  # what digital silence reads as

# Minimum-statistics noise floor: the minimum of the smoothed periodogram over 6 x 16 frames
# (1.9 s), times a bias factor.
_NSUB, _LSUB, _FLOOR_BIAS, _SMOOTH = 6, 16, 1.5, 0.8
# The level's 20th percentile is held at least this far below the quietest frame over the same
# horizon (see FrameFeatures.push).
_P20_MARGIN_DB = 3.0
# A rise of the noise floor by more than _JUMP_DB from one 16-frame block to the next, with no
# frame of the last ~2 s more than _JUMP_NEAR_DB below the new floor, is a change of background.
_JUMP_DB, _JUMP_NEAR_DB = 10.0, 6.0

# Running averages: (name, time constant in frames).  Order matters: it is the model's input.
_CONTEXT = (
    ("snr_3", 3), ("snr_15", 15), ("snr_50", 50),
    ("pitch_5", 5), ("pitch_20", 20),
    ("flux_10", 10), ("flux_40", 40),
    ("sustain_10", 10), ("sustain_40", 40), ("peak_sustain_10", 10), ("peak_sustain_40", 40),
    ("voiced_50", 50), ("voicing_switch_25", 25), ("low_energy_50", 50),
    ("level_15", 15), ("level_sq_15", 15), ("level_60", 60), ("level_sq_60", 60),
    ("mod4_25", 25),
)
_CTX_ALPHA = np.array([math.exp(-1.0 / tau) for _, tau in _CONTEXT])
_CTX_INDEX = {name: i for i, (name, _) in enumerate(_CONTEXT)}
# Restarted on a change of background: the SNR averages (against a floor that was wrong) from the
# current frame, the slow level statistics from the fast ones (which no longer hold the old level).
_RESEED_SNR = [_CTX_INDEX[n] for n in ("snr_3", "snr_15", "snr_50")]
_RESEED_LEVEL_60 = [_CTX_INDEX[n] for n in ("level_60", "level_sq_60")]
_RESEED_LEVEL_15 = [_CTX_INDEX[n] for n in ("level_15", "level_sq_15")]
_LEVEL_15 = _CTX_INDEX["level_15"]

FEATURE_NAMES: tuple[str, ...] = (
    *(f"band_snr_{_EDGES_HZ[i]}_{_EDGES_HZ[j]}" for i, j in zip(_BROAD, _BROAD[1:] + (_NBAND,))),
    "snr", "bin_snr", "bin_active", "flatness", "pitch_raw", "pitch_clean", "zcr", "flux", "centroid", "sustain",
    "peak_sustain", "above_p20", "above_p80", "p80_minus_p20", "below_peak",
    "snr_3", "snr_15", "snr_50", "pitch_5", "pitch_20", "flux_10", "flux_40",
    "sustain_10", "sustain_40", "peak_sustain_10", "peak_sustain_40", "voiced_50", "voicing_switch_25", "low_energy_50",
    "level_std_15", "level_std_60", "mod4",
)


def _band_matrix() -> np.ndarray:
    freqs = np.arange(_NBIN) * RATE / _NFFT
    bands = np.zeros((_NBAND, _NBIN))
    for i, (lo, hi) in enumerate(zip(_EDGES_HZ[:-1], _EDGES_HZ[1:])):
        bands[i] = (freqs >= lo) & (freqs < hi)
    return bands


def _resonator(f_hz: float, rate: float) -> tuple[float, float, float, float]:
    """Band-pass biquad (Q = 1) centred on f_hz, for the 50 frames/s level trajectory."""
    w0 = 2 * math.pi * f_hz / rate
    alpha = math.sin(w0) / 2
    a0 = 1 + alpha
    return alpha / a0, -alpha / a0, -2 * math.cos(w0) / a0, (1 - alpha) / a0


_WINDOW = np.hanning(_WIN + 2)[1:-1]
_WIN_AC = np.fft.irfft(np.abs(np.fft.rfft(_WINDOW, _NFFT)) ** 2)
_WIN_AC_NORM = _WIN_AC[_LAG_MIN:_LAG_MAX + 1] / _WIN_AC[0]
_BANDS = _band_matrix()
_BAND_INDEX = np.arange(_NBAND) / _NBAND
_IN_BAND = slice(int(_EDGES_HZ[0] * _NFFT / RATE), int(_EDGES_HZ[-1] * _NFFT / RATE))
# Mean square of a frame from its one-sided windowed power spectrum.
_POWER_TO_MS = 2.0 / (_NFFT * float(np.sum(_WINDOW ** 2)))
_MOD4 = _resonator(4.0, 1000.0 / 20)
_NEPER_TO_DB = 10.0 / math.log(10.0)
_SMOOTH9 = np.full(9, 1.0 / 9.0)
_INV_NIN = 1.0 / (_IN_BAND.stop - _IN_BAND.start)


class FrameFeatures:
    """Causal feature extractor: `push(frame)` once per 20 ms frame, in order."""

    def __init__(self) -> None:
        self._buf = np.zeros(_WIN)
        self._n = 0
        self._smooth: np.ndarray | None = None
        self._submin = np.empty(_NBIN)
        self._ring = np.full((_NSUB, _NBIN), np.inf)
        self._ringmin = np.full(_NBIN, np.inf)
        self._hist = np.zeros((5, _NBAND))  # log band energies of the last 5 frames
        self._two = np.empty((2, _NBIN))  # power and noise-subtracted power
        self._peaks = np.zeros((3, _IN_BAND.stop - _IN_BAND.start))  # spectral peak shapes, last 3
        self._ctx = np.zeros(len(_CONTEXT))
        self._p20 = self._p80 = self._peak = 0.0
        self._voiced = 0.0
        self._lsub = math.inf  # quietest frame level of the current 16-frame block
        self._lring = [math.inf] * _NSUB  # ... and of the last 6 blocks
        self._floor_mark = math.inf  # in-band noise floor at the last block boundary
        self._mod = [0.0, 0.0, 0.0, 0.0]  # resonator state: x1, x2, y1, y2
        self.noise_floor_dbfs = LEVEL_FLOOR_DBFS

    def push(self, frame: np.ndarray) -> tuple[float, np.ndarray]:
        """Return (frame level in dBFS, feature vector) for one frame of 160 int16 samples."""
        x = frame * (1.0 / 32768.0)
        buf = self._buf
        buf[:-FRAME] = buf[FRAME:]
        buf[-FRAME:] = x
        ms = float(x.dot(x)) / FRAME
        level = 10.0 * math.log10(ms) if ms > 1e-10 else LEVEL_FLOOR_DBFS
        spec = np.fft.rfft(buf * _WINDOW, _NFFT)
        power = spec.real * spec.real + spec.imag * spec.imag
        noise = self._track_noise(power)

        e_band = _BANDS @ power
        n_band = _BANDS @ noise
        log_band = 10.0 * np.log10(e_band + _TINY)
        band_snr = 10.0 * np.log10((np.add.reduceat(e_band, _BROAD) + _TINY)
                                   / (np.add.reduceat(n_band, _BROAD) + _TINY))
        np.minimum(np.maximum(band_snr, -10.0, out=band_snr), 50.0, out=band_snr)
        e_tot = float(e_band.sum())
        l_tot = 10.0 * math.log10(e_tot * _POWER_TO_MS + _TINY)
        snr = 10.0 * math.log10((e_tot + _TINY) / (float(n_band.sum()) + _TINY))
        p_in = power[_IN_BAND] + 1e-14
        log_p = np.log(p_in)
        flatness = float(log_p.sum()) * _INV_NIN - math.log(float(p_in.sum()) * _INV_NIN)
        # Per-bin a-posteriori SNR: narrowband noise (hum) spoils few bins, speech lifts many.
        bin_ratio = p_in / (noise[_IN_BAND] + 1e-14)
        bin_active = float(np.count_nonzero(bin_ratio > 4.0)) * _INV_NIN
        np.minimum(np.maximum(bin_ratio, 1.0, out=bin_ratio), 1000.0, out=bin_ratio)
        bin_snr = float(np.log(bin_ratio).sum()) * _INV_NIN * _NEPER_TO_DB

        two = self._two
        two[0] = power
        np.subtract(power, noise, out=two[1])
        np.maximum(two[1], 0.0, out=two[1])
        ac = np.fft.irfft(two, _NFFT)
        # Normalised by the raw frame's energy, so that the clean part's periodicity counts only
        # as far as the clean part is a large share of the frame (steady hum leaves none).
        r = ac[:, _LAG_MIN:_LAG_MAX + 1] * (1.0 / (float(ac[0, 0]) + _TINY)) / _WIN_AC_NORM
        pitch_raw, pitch_clean = (min(float(v), 1.2) for v in r.max(axis=1))
        neg = frame < 0
        zcr = np.count_nonzero(neg[1:] ^ neg[:-1]) / FRAME

        # Spectral peaks that stay put for 60 ms (held notes, hum) vs gliding harmonics (speech).
        peaks = log_p - np.convolve(log_p, _SMOOTH9, mode="same")
        old_peaks = self._peaks[self._n % 3]
        denom = math.sqrt(float(peaks @ peaks) * float(old_peaks @ old_peaks))
        peak_sustain = float(peaks @ old_peaks) / denom if denom > 1e-9 else 0.0
        self._peaks[self._n % 3] = peaks

        hist = self._hist
        first = self._n == 1
        flux = 0.0 if first else float(np.abs(log_band - hist[0]).sum()) * (1.0 / _NBAND)
        cur = log_band - float(log_band.sum()) * (1.0 / _NBAND)
        old = hist[4] - float(hist[4].sum()) * (1.0 / _NBAND)
        denom = math.sqrt(float(cur @ cur) * float(old @ old))
        sustain = float(cur @ old) / denom if (self._n > 5 and denom > 1e-9) else 0.0
        hist[1:] = hist[:-1]
        hist[0] = log_band
        e_clean = np.maximum(e_band - n_band, 0.0)
        centroid = float(_BAND_INDEX @ e_clean) / (float(e_clean.sum()) + _TINY)

        # Level percentiles (asymmetric trackers, ~20th and ~80th) and a decaying peak.
        if first:
            self._p20 = self._p80 = self._peak = l_tot
        self._p20 += 0.05 if l_tot > self._p20 else -0.2
        self._p80 += 0.2 if l_tot > self._p80 else -0.05
        # A background that changes mid-call (a quiet room, then a street; hiss, then hum) must
        # not leave the 20th percentile far below the new level for the ~20 s its slow climb
        # takes: it is held no lower than the quietest frame of the last ~2 s (less a margin),
        # the horizon of the noise floor.  Speech dips within 2 s, so it is rarely held.
        self._lsub = min(self._lsub, l_tot)
        reseed = False
        if self._n % _LSUB == 0:
            self._lring[(self._n // _LSUB) % _NSUB] = self._lsub
            self._lsub = math.inf
            lowest = min(self._lring)
            # The noise floor jumped, and no frame of the last ~2 s was much below it: the
            # background changed (speech that runs on also lifts the floor, but it dips well
            # below).  What the running SNR and level statistics remember is of a background
            # that is gone: they start again from here (see the context update below).
            floor = 10.0 * math.log10(float(n_band.sum()) * _POWER_TO_MS + _TINY)
            reseed = floor - self._floor_mark > _JUMP_DB and lowest > floor - _JUMP_NEAR_DB
            self._floor_mark = floor
        else:
            lowest = min(self._lsub, min(self._lring))
        if reseed:  # the percentiles start again from the last ~2 s: its quietest frame, its mean
            self._p20 = max(self._p20, lowest)
            self._p80 = max(self._p80, float(self._ctx[_LEVEL_15]))
        elif lowest - _P20_MARGIN_DB > self._p20:
            self._p20 = lowest - _P20_MARGIN_DB
        if self._p80 < self._p20:
            self._p80 = self._p20
        self._peak = max(l_tot, self._peak - 0.3)
        voiced = 1.0 if pitch_clean > 0.6 else 0.0
        switch = abs(voiced - self._voiced)
        self._voiced = voiced
        b0, b2, a1, a2 = _MOD4
        x1, x2, y1, y2 = self._mod
        y = b0 * l_tot + b2 * x2 - a1 * y1 - a2 * y2
        self._mod = [l_tot, x1, y, y1]

        inputs = np.array((
            bin_snr, bin_snr, bin_snr, pitch_clean, pitch_clean, flux, flux, sustain, sustain,
            peak_sustain, peak_sustain, voiced, switch, 1.0 if l_tot < self._peak - 9.0 else 0.0,
            l_tot, l_tot * l_tot, l_tot, l_tot * l_tot, y * y,
        ))
        ctx = self._ctx
        if first:
            ctx[:] = inputs
        else:
            if reseed:
                ctx[_RESEED_SNR] = inputs[_RESEED_SNR]
                ctx[_RESEED_LEVEL_60] = ctx[_RESEED_LEVEL_15]
            ctx *= _CTX_ALPHA
            ctx += (1.0 - _CTX_ALPHA) * inputs
        (snr_3, snr_15, snr_50, pitch_5, pitch_20, flux_10, flux_40, sustain_10, sustain_40,
         peak_sustain_10, peak_sustain_40, voiced_50, switch_25, low_energy_50,
         level_15, level_sq_15, level_60, level_sq_60, mod4_sq) = ctx.tolist()
        std15 = math.sqrt(max(level_sq_15 - level_15 * level_15, 0.0))
        std60 = math.sqrt(max(level_sq_60 - level_60 * level_60, 0.0))
        # Order as FEATURE_NAMES; the scales only keep values near 1 (the model standardises).
        feats = np.concatenate((band_snr * 0.05, (
            snr * 0.05, bin_snr * 0.1, bin_active, flatness, pitch_raw, pitch_clean, zcr * 4.0,
            flux * 0.2, centroid, sustain, peak_sustain,
            (l_tot - self._p20) * 0.05, (l_tot - self._p80) * 0.05, (self._p80 - self._p20) * 0.05,
            (l_tot - self._peak) * 0.05,
            snr_3 * 0.1, snr_15 * 0.1, snr_50 * 0.1, pitch_5, pitch_20, flux_10 * 0.2, flux_40 * 0.2,
            sustain_10, sustain_40, peak_sustain_10, peak_sustain_40, voiced_50, switch_25 * 5.0,
            low_energy_50, std15 * 0.1, std60 * 0.1, math.sqrt(mod4_sq) * 0.1,
        )))
        return level, feats

    def _track_noise(self, power: np.ndarray) -> np.ndarray:
        self._n += 1
        if self._smooth is None:
            self._smooth = power.copy()
            self._submin[:] = power
        else:
            self._smooth *= _SMOOTH
            self._smooth += (1.0 - _SMOOTH) * power
            np.minimum(self._submin, self._smooth, out=self._submin)
        if self._n % _LSUB == 0:
            self._ring[(self._n // _LSUB) % _NSUB] = self._submin
            self._ringmin = self._ring.min(axis=0)
            self._submin[:] = self._smooth
        noise = np.minimum(self._ringmin, self._submin)
        noise *= _FLOOR_BIAS
        ms = float(noise.sum()) * _POWER_TO_MS
        self.noise_floor_dbfs = 10.0 * math.log10(ms) if ms > 1e-10 else LEVEL_FLOOR_DBFS
        return noise


class SpeechModel:
    """One hidden layer (tanh) and a logistic output: feature vector -> speech probability."""

    def __init__(self, weights: dict) -> None:
        if tuple(weights["features"]) != FEATURE_NAMES:
            raise ValueError("detector weights were trained on a different feature set")
        self.mean = np.asarray(weights["mean"], dtype=np.float64)
        self.scale = 1.0 / np.asarray(weights["std"], dtype=np.float64)
        w1 = np.asarray(weights["w1"], dtype=np.float64)
        # Fold the standardisation into the first layer: (x - m) * s @ W1 = x @ (s W1) - (m s) @ W1
        self.w1 = (self.scale[:, None] * w1).T.copy()
        self.b1 = np.asarray(weights["b1"], dtype=np.float64) - (self.mean * self.scale) @ w1
        self.w2 = np.asarray(weights["w2"], dtype=np.float64)
        self.b2 = float(weights["b2"])
        self.meta = {k: v for k, v in weights.items() if k not in ("mean", "std", "w1", "b1", "w2", "b2")}

    @classmethod
    def load(cls, name: str = "detector_weights.json") -> SpeechModel:
        """The weights shipped with the package (made by bench/train_detector.py)."""
        text = resources.files("callflows").joinpath(name).read_text(encoding="utf-8")
        return cls(json.loads(text))

    def prob(self, feats: np.ndarray) -> float:
        z = float(self.w2 @ np.tanh(self.w1 @ feats + self.b1)) + self.b2
        if z < -30.0:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def probs(self, feats: np.ndarray) -> np.ndarray:
        """Vectorised `prob` over rows of a feature matrix (training and analysis)."""
        z = np.tanh(feats @ self.w1.T + self.b1) @ self.w2 + self.b2
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))
