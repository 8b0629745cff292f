"""Configuration: defaults that run, errors that name the key, the lookup order for the register."""
import pytest

from softphone import config
from softphone.config import ConfigError


def test_defaults_run_direct_on_loopback():
    cfg = config.load(environ={})
    assert cfg.sip.listen == ("127.0.0.1", 5060) and cfg.sip.registrar is None
    assert cfg.storage.db == "sqlite:///var/frontdesk.db" and cfg.answer.after_rings == 2


def test_file_then_environment_then_flags(tmp_path):
    path = tmp_path / "desk.toml"
    path.write_text('[sip]\nlisten = "127.0.0.5:5070"\n[storage]\ndb = "sqlite:///file.db"\n'
                    '[answer]\nring_cadence = [2000, 4000]\n', encoding="utf-8")
    cfg = config.load(path, environ={})
    assert cfg.sip.listen == ("127.0.0.5", 5070) and cfg.storage.db == "sqlite:///file.db"
    assert cfg.answer.ring_cadence == (2000, 4000)
    cfg = config.load(environ={"FRONTDESK_CONFIG": str(path), "FRONTDESK_DB": "sqlite:///env.db"})
    assert cfg.storage.db == "sqlite:///env.db"
    cfg = config.load(path, overrides={"storage": {"db": "sqlite:///flag.db"}, "answer": {"delay_ms": 300}},
                      environ={"FRONTDESK_DB": "sqlite:///env.db"})
    assert cfg.storage.db == "sqlite:///flag.db" and cfg.answer.delay_ms == 300


@pytest.mark.parametrize("text,message", [
    ("[sip]\nlisen = 'x'\n", r"sip\.lisen: unknown key \(did you mean sip\.listen\?\)"),
    ("[answer]\nafter_rings = 'two'\n", r"answer\.after_rings: must be a whole number"),
    ("[answer]\nafter_rings = 4\n", r"answer\.after_rings: 4 breaks R1"),
    ("[answr]\nafter_rings = 2\n", r"answr: unknown section \(did you mean \[answer\]\?\)"),
    ("[sip]\nlisten = '127.0.0.1:99999'\n", r"sip\.listen: must be HOST:PORT"),
    ("[sip]\nrtp_ports = '20000-20000'\n", r"sip\.rtp_ports"),
    ("[desk]\ntimezone = 'Mars/Olympus'\n", r"desk\.timezone: unknown time zone"),
    ("[storage]\ndb = 'mysql://x'\n", r"storage\.db: must be an SQLAlchemy URL"),
    ("[sip\n", r"config: .* is not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        config.load(path, environ={})


def test_missing_file_is_named():
    with pytest.raises(ConfigError, match="file not found"):
        config.load("/nonexistent/desk.toml", environ={})


def test_reference_lists_every_key():
    text = config.reference()
    assert "[sip]" in text and "after_rings = 2" in text and 'listen = "127.0.0.1:5060"' in text


def test_configuration_doc_is_generated_from_the_code():
    from pathlib import Path

    from softphone.configdoc import document
    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == document(), "run: python -m softphone.configdoc > docs/configuration.md"
