"""C2PA content credentials: `amari keygen`'s chain, a signed PNG, and c2pa-python reading it back."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from amari.errors import UsageError
from amari.provenance import credentials
from amari.provenance.credentials import TRAINED_ALGORITHMIC_MEDIA, configured_key, keygen, read_credentials, sign_png

c2pa = pytest.importorskip("c2pa", reason="the optional c2pa extra is not installed (pip install 'amari[c2pa]')")

PARAMS = {"prompt": "a photo of a woman", "seed": 1234, "steps": 25, "model": "sd-v1-4"}


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def key():
    return keygen()  # into the test's own cache folder


def test_keygen_writes_a_chain_c2pa_accepts(key):
    from cryptography import x509

    assert key.key.parent == credentials.default_key_dir() and key.root is not None
    assert oct(key.key.stat().st_mode & 0o777) == "0o600"
    signer = x509.load_pem_x509_certificate(key.cert.read_bytes())
    root = x509.load_pem_x509_certificate(key.root.read_bytes())
    assert signer.issuer == root.subject != signer.subject
    assert signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert signer.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    usages = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION in usages
    signer.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    signer.verify_directly_issued_by(root)
    assert configured_key() == key
    with pytest.raises(UsageError, match="--force"):
        keygen()
    assert keygen(force=True).key == key.key


def test_manifest_is_read_back_by_c2pa_python(key, astronaut, tmp_path):
    signed = sign_png(png_bytes(astronaut), key, PARAMS, "face.png")
    path = tmp_path / "face.png"
    path.write_bytes(signed)
    reader = c2pa.Reader(str(path))  # the library itself, default settings
    store = json.loads(reader.json())
    manifest = store["manifests"][store["active_manifest"]]
    assertions = {item["label"]: item["data"] for item in manifest["assertions"]}
    created = assertions["c2pa.actions.v2"]["actions"][0]
    assert created["action"] == "c2pa.created" and created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert assertions["amari.parameters"] == PARAMS
    assert manifest["signature_info"]["common_name"] == "amari local signer"
    # Valid, and only "untrusted" against c2pa's own (empty) trust list: the chain passes its profile checks.
    assert reader.get_validation_state() == "Valid"
    assert {item["code"] for item in store["validation_status"]} == {"signingCredential.untrusted"}
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), astronaut)  # pixels untouched


def test_amari_reads_its_own_credentials_as_trusted(key, astronaut):
    signed = sign_png(png_bytes(astronaut), key, PARAMS, "face.png")
    found = read_credentials(signed)
    assert found.state == "Trusted" and found.valid and found.synthetic  # root.pem beside the key
    assert found.parameters == PARAMS and found.generator == "amari" and found.failures == []
    assert read_credentials(signed, trust=key.cert).state == "Valid"  # the wrong anchor: not trusted


def test_edits_break_or_drop_the_manifest(key, astronaut):
    signed = sign_png(png_bytes(astronaut), key, PARAMS, "face.png")
    tampered = bytearray(signed)
    tampered[len(tampered) // 2] ^= 0xFF  # inside the image data
    found = read_credentials(bytes(tampered))
    assert found.state == "Invalid" and not found.valid and "assertion.dataHash.mismatch" in found.failures
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(signed)).convert("RGB").save(jpeg, "JPEG", quality=95)
    assert read_credentials(jpeg.getvalue()) is None
    assert read_credentials(png_bytes(astronaut)) is None


def test_key_configuration(key, tmp_path, monkeypatch):
    other = keygen(tmp_path / "elsewhere")
    monkeypatch.setenv(credentials.KEY_ENV, str(other.key))
    assert configured_key() == other  # the environment beats the cache folder
    assert configured_key(key.key) == key  # --key beats both
    monkeypatch.setenv(credentials.CERT_ENV, str(tmp_path / "missing.pem"))
    with pytest.raises(UsageError, match="certificate chain"):
        configured_key()
    monkeypatch.delenv(credentials.CERT_ENV)
    monkeypatch.delenv(credentials.KEY_ENV)
    for path in (key.key, key.cert):
        os.remove(path)
    assert configured_key() is None
    assert "amari keygen" in credentials.signing_note(None)


def test_a_key_c2pa_cannot_use_is_one_clear_error(tmp_path, astronaut):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    bad = keygen(tmp_path / "bad")
    secp256k1 = ec.generate_private_key(ec.SECP256K1())
    bad.key.write_bytes(
        secp256k1.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(UsageError, match="C2PA signs with"):
        sign_png(png_bytes(astronaut), bad, PARAMS, "x.png")
