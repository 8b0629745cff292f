"""G.711 tables agree with the reference codec (the stdlib's audioop, deprecated but present on 3.11).

pyVoIP 1.6.8 encodes PCMA as mu-law (field test M10) and decodes to 8 bits (M3/M4); the agent's
own tables keep 16-bit resolution and use the right law.
"""
import warnings

import numpy as np
import pytest

from softphone import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")

ALL_BYTES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


@pytest.mark.parametrize("codec,ref_decode", [("PCMU", audioop.ulaw2lin), ("PCMA", audioop.alaw2lin)])
def test_decode_matches_reference(codec, ref_decode):
    expected = np.frombuffer(ref_decode(ALL_BYTES, 2), dtype=np.int16)
    assert np.array_equal(g711.decode(ALL_BYTES, codec), expected)


@pytest.mark.parametrize("codec,ref_encode", [("PCMU", audioop.lin2ulaw), ("PCMA", audioop.lin2alaw)])
def test_encode_matches_reference_for_every_sample(codec, ref_encode):
    assert g711.encode(ALL_SAMPLES, codec) == ref_encode(ALL_SAMPLES.tobytes(), 2)


def test_pcma_is_not_mulaw():
    tone = (3000 * np.sin(np.arange(160) * 2 * np.pi * 1004 / 8000)).astype(np.int16)
    assert g711.encode(tone, "PCMA") != g711.encode(tone, "PCMU")


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_quiet_tone_keeps_resolution(codec):
    """A -40 dBFS tone survives with many distinct values (pyVoIP's 8-bit path keeps 4)."""
    amplitude = 32768 * 10 ** (-40 / 20)
    tone = (amplitude * np.sin(np.arange(800) * 2 * np.pi * 1004 / 8000)).astype(np.int16)
    decoded = g711.decode(g711.encode(tone, codec), codec)
    assert len(np.unique(decoded)) > 20
    error = decoded.astype(float) - tone
    sinad = 10 * np.log10(np.mean(tone.astype(float) ** 2) / np.mean(error ** 2))
    assert sinad > 25


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_silence_byte_decodes_to_near_zero(codec):
    assert abs(int(g711.decode(bytes([g711.SILENCE_BYTE[codec]]), codec)[0])) <= 8
