"""The one redaction function: secrets of the settings, secret query keys, URL passwords, log records."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from smmdn.config import Settings
from smmdn.errors import InputError, SourceError
from smmdn.redact import MASK, redact, redact_value


def test_every_secret_setting_is_known_once_a_settings_object_exists() -> None:
    secret_fields = [n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)]
    assert secret_fields, "Settings has SecretStr fields"
    values = {name: f"json://hooks.example.org/Tok{name}Zq81" if "url" in name else f"S3cr3t-{name}"
              for name in secret_fields}
    Settings(_env_file=None, **{k: SecretStr(v) for k, v in values.items()})
    for name, value in values.items():
        assert value not in redact(f"failed with {value} in it"), name
    # an URL secret printed another way (host/path without the scheme) still loses its token
    assert "Tokapprise_urlsZq81" not in redact("POST to hooks.example.org/Tokapprise_urlsZq81 failed")


@pytest.mark.parametrize("key", ["apikey", "token", "key", "password", "signature", "api_key", "APIKEY"])
def test_secret_query_values_are_masked(key: str) -> None:
    text = f"GET https://api.example.org/v1?latitude=1&{key}=abc123DEF&x=2 failed"
    assert redact(text) == f"GET https://api.example.org/v1?latitude=1&{key}={MASK}&x=2 failed"
    assert "latitude=1" in redact(text)  # ordinary parameters stay readable


def test_url_passwords_are_masked() -> None:
    assert redact("postgresql+psycopg://smmdn:hunter22@db:5432/smmdn") == f"postgresql+psycopg://smmdn:{MASK}@db:5432/smmdn"


def test_errors_are_redacted_when_raised() -> None:
    Settings(_env_file=None, open_meteo_api_key=SecretStr("Zq-error-canary-77"))
    assert "Zq-error-canary-77" not in str(SourceError("https://x.org/?a=1&b=Zq-error-canary-77"))
    assert "Zq-error-canary-77" not in str(InputError("bad", where="Zq-error-canary-77", fix="x"))


def test_log_records_carry_redacted_text(caplog: pytest.LogCaptureFixture) -> None:
    Settings(_env_file=None, open_meteo_api_key=SecretStr("Zq-log-canary-55"))
    log = logging.getLogger("smmdn.test.redact")
    with caplog.at_level(logging.INFO, logger="smmdn.test.redact"):
        log.info("url %s", "https://x.org/?apikey=Zq-log-canary-55")
        try:
            raise RuntimeError("boom with Zq-log-canary-55")
        except RuntimeError:
            log.exception("failed")
    text = caplog.text + "".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "Zq-log-canary-55" not in text and MASK in text


def test_redact_value_walks_nested_rows() -> None:
    rows = [{"error": "https://x.org/?token=abcdef1234", "n": 3, "more": ["password=xyz12345"]}]
    assert redact_value(rows) == [{"error": f"https://x.org/?token={MASK}", "n": 3, "more": [f"password={MASK}"]}]
    assert redact("monkey=banana and key=s3cret") == f"monkey=banana and key={MASK}"
