"""C2PA content credentials: a signed manifest that says the image is AI-generated and how it was made.

The manifest holds a `c2pa.created` action whose `digitalSourceType` is the IPTC term for trained
algorithmic media, and an `amari.parameters` assertion with the parameters amari stores in its JSON
chunk. An image that already carries credentials (one `amari mark` is given) keeps its history, as the
specification asks of an edit: the new manifest opens with `c2pa.opened`, whose ingredient is the
earlier file and its manifest (relationship `parentOf`), then `c2pa.edited` for the watermark; whether
the image is synthetic is then read down that chain.

A manifest is signed with a key the user configures; without a key (or without the optional
`c2pa-python` package, `pip install amari[c2pa]`) images are written without a manifest and `amari
mark`/`amari verify` say so. A manifest survives copying the file, and nothing else: any re-encode,
resize or crop drops it, which is why the watermark and the fingerprint registry exist.

Where the key comes from, first found wins:

1. `--key PATH` on `amari mark`;
2. `AMARI_C2PA_KEY` (a PEM private key); its certificate chain is `AMARI_C2PA_CERT`, or the same path
   with the suffix `.pem`;
3. `signer.key` and `signer.pem` in `<cache>/c2pa/`, which `amari keygen` writes.

`amari keygen` makes a local two-level chain as C2PA validators require: a self-signed root CA
(`root.pem`, whose private key is discarded once it has signed) and an ES256 signing certificate with
key usage digitalSignature, extended key usages emailProtection and documentSigning, not a CA, with
subject and authority key identifiers. c2pa-python accepts it; other validators report it as
"untrusted" (its root is on no trust list) while `amari verify` trusts the `root.pem` beside the key.
For credentials others trust, use a certificate from a CA on the C2PA trust list instead.

Which signers `amari verify` trusts: the root beside the configured key (your own images), the PEM
files listed in `AMARI_C2PA_TRUST` (separated like PATH), and those given with `--trust`. A manifest
that is valid but signed under another root is only a claim, whatever its signer's name says.
"""

from __future__ import annotations

import datetime
import io
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from amari import __version__
from amari.errors import UsageError

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PARAMETERS_LABEL = "amari.parameters"
KEY_ENV = "AMARI_C2PA_KEY"
CERT_ENV = "AMARI_C2PA_CERT"
TRUST_ENV = "AMARI_C2PA_TRUST"
KEY_FILE, CERT_FILE, ROOT_FILE = "signer.key", "signer.pem", "root.pem"
INSTALL_HINT = "install the optional c2pa extra: pip install 'amari[c2pa]'"
_VALID_DAYS = 3650  # without a time-stamp authority a manifest is checked against the certificate's dates now
# No thumbnail (it would add ~100 KB of JPEG per image) and no network: no remote manifests, no OCSP.
_SETTINGS = {
    "version": 1,
    "builder": {"thumbnail": {"enabled": False}},
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
}


@dataclass(frozen=True)
class SigningKey:
    key: Path
    cert: Path

    @property
    def root(self) -> Path | None:
        """The trust anchor `amari keygen` wrote beside the key, if there is one."""
        root = self.key.parent / ROOT_FILE
        return root if root.is_file() else None


@dataclass(frozen=True)
class Credentials:
    """What a C2PA manifest in a file says, and whether its signature holds."""

    state: str  # "Trusted", "Valid" (signature and hashes hold, signer not on a trust list) or "Invalid"
    signer: str | None  # common name of the signing certificate
    issuer: str | None
    generator: str | None  # the claim generator's name
    synthetic: bool  # a c2pa.created action with digitalSourceType trainedAlgorithmicMedia
    parameters: dict | None  # amari's parameters assertion, when amari signed it
    failures: list[str] = field(default_factory=list)  # validation codes other than "untrusted"

    @property
    def valid(self) -> bool:
        return self.state in ("Valid", "Trusted")

    @property
    def trusted(self) -> bool:
        """Valid, and signed under a root the user trusts (see `trust_files`)."""
        return self.state == "Trusted"


def is_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("c2pa") is not None


def default_key_dir() -> Path:
    from amari.storage.layout import cache_root

    return cache_root() / "c2pa"


def configured_key(explicit: str | os.PathLike | None = None) -> SigningKey | None:
    """The signing key to use, or None when none is configured. A key named but missing is an error."""
    named = explicit or os.environ.get(KEY_ENV)
    if named:
        key = Path(named).expanduser()
        cert = Path(os.environ[CERT_ENV]).expanduser() if os.environ.get(CERT_ENV) else key.with_suffix(".pem")
        for path, what in ((key, "private key"), (cert, "certificate chain")):
            if not path.is_file():
                raise UsageError(f"C2PA {what} {path} does not exist (set {KEY_ENV}/{CERT_ENV} or run amari keygen)")
        return SigningKey(key=key, cert=cert)
    key, cert = default_key_dir() / KEY_FILE, default_key_dir() / CERT_FILE
    return SigningKey(key=key, cert=cert) if key.is_file() and cert.is_file() else None


def signing_note(key: SigningKey | None) -> str | None:
    """One line saying why images get no C2PA manifest, or None when they do."""
    if not is_available():
        return f"C2PA: no content credentials ({INSTALL_HINT})"
    if key is None:
        return f"C2PA: no content credentials (no signing key: run `amari keygen` or set {KEY_ENV})"
    return None


@dataclass(frozen=True)
class Parent:
    """The file an image was made from when that file carries credentials of its own."""

    data: bytes
    mime: str  # "image/png", "image/jpeg", ...
    title: str


PARENT_ID = "parent"  # how the `c2pa.opened` action names its ingredient


def manifest(params: dict, title: str | None, agent: str = "amari", parent: Parent | None = None) -> dict:
    """The manifest definition amari signs: created as trained algorithmic media, or, from a `parent` with
    credentials, opened from it and edited (the watermark); plus amari's parameters."""
    software = {"name": agent, "version": __version__}
    if parent is None:
        actions = [
            {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": software}
        ]
    else:
        actions = [
            {"action": "c2pa.opened", "parameters": {"ingredientIds": [PARENT_ID]}, "softwareAgent": software},
            {"action": "c2pa.edited", "description": "an invisible watermark added", "softwareAgent": software},
        ]
    definition = {
        "claim_generator_info": [{"name": "amari", "version": __version__}],
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {"label": PARAMETERS_LABEL, "data": params},
        ],
    }
    return {**definition, "title": title} if title else definition


def sign_png(
    png: bytes, key: SigningKey, params: dict, title: str | None, agent: str = "amari", parent: Parent | None = None
) -> bytes:
    """The PNG `png` with a signed manifest embedded (a `caBX` chunk); pixels and text chunks unchanged.
    With a `parent` (the file it was made from, which has credentials), that file is its ingredient."""
    import c2pa

    try:
        signer = _signer(key.key, key.cert, *_mtimes(key), os.getpid())  # built once per process and key
    except OSError as exc:  # a worker on another machine of a Ray cluster looks for the key at the same path
        raise UsageError(
            f"C2PA key or certificate {exc.filename} cannot be read here ({exc.strerror}); "
            "with --ray, every node needs them at the same path"
        ) from None
    builder = c2pa.Builder(manifest(params, title, agent, parent), context=_context(None, os.getpid()))
    signed = io.BytesIO()
    try:
        if parent is not None:
            ingredient = {"title": parent.title, "relationship": "parentOf", "label": PARENT_ID}
            builder.add_ingredient(ingredient, parent.mime, io.BytesIO(parent.data))
        builder.sign(signer, "image/png", io.BytesIO(png), signed)
    except c2pa.C2paError as exc:
        raise UsageError(f"C2PA signing with {key.key} failed: {exc}") from None
    return signed.getvalue()


def read_credentials(data: bytes, mime: str | None = None, trust=None) -> Credentials | None:
    """The manifest in the file `data`, or None when there is none (or c2pa-python is not installed).
    `trust`: the PEM file or files of the roots to trust (default: `trust_files()`)."""
    if not is_available():
        return None
    import c2pa

    try:
        reader = c2pa.Reader.try_create(mime or "", io.BytesIO(data), context=_context(_anchors(trust), os.getpid()))
    except c2pa.C2paError:
        reader = None  # damaged or unsupported: treated like no manifest, the other marks still count
    if reader is None:
        return None
    with reader:
        store = json.loads(reader.json())
        state = reader.get_validation_state() or "Invalid"
    active = store.get("manifests", {}).get(store.get("active_manifest"), {})
    signature = active.get("signature_info") or {}
    failures = [
        item.get("code", "")
        for item in store.get("validation_status") or []
        if item.get("code") != "signingCredential.untrusted"
    ]
    assertions = _assertions(active)
    generators = active.get("claim_generator_info") or [{}]
    parameters = assertions.get(PARAMETERS_LABEL)
    return Credentials(
        state=state,
        signer=signature.get("common_name"),
        issuer=signature.get("issuer"),
        generator=generators[0].get("name") or active.get("claim_generator"),
        synthetic=_synthetic(store, store.get("active_manifest")),
        parameters=parameters if isinstance(parameters, dict) else None,
        failures=failures if state == "Invalid" else [],
    )


def _assertions(manifest: dict) -> dict:
    return {item.get("label"): item.get("data") for item in manifest.get("assertions", [])}


def _synthetic(store: dict, label: str | None, depth: int = 0) -> bool:
    """Whether a manifest says its image was created as trained algorithmic media, or was opened from an
    image whose manifest says so (followed down the `parentOf` ingredients)."""
    manifest = store.get("manifests", {}).get(label) if label else None
    if not isinstance(manifest, dict) or depth > 16:
        return False
    assertions = _assertions(manifest)
    actions = []
    for name in ("c2pa.actions.v2", "c2pa.actions"):
        actions += (assertions.get(name) or {}).get("actions", [])
    if any(
        action.get("action") == "c2pa.created" and action.get("digitalSourceType") == TRAINED_ALGORITHMIC_MEDIA
        for action in actions
    ):
        return True
    parents = [item for item in manifest.get("ingredients", []) if item.get("relationship") == "parentOf"]
    return any(_synthetic(store, item.get("active_manifest"), depth + 1) for item in parents)


def trust_files(extra=()) -> list[Path]:
    """The PEM files of the roots whose signers `amari verify` trusts: the root `amari keygen` wrote beside
    the configured key, those listed in AMARI_C2PA_TRUST, and `extra`. A listed file that does not exist
    is an error (a trust list that silently trusts nothing would turn every verdict into a claim)."""
    try:
        key = configured_key()
    except UsageError:
        key = None
    files = [key.root] if key is not None and key.root is not None else []
    listed = [Path(item).expanduser() for item in os.environ.get(TRUST_ENV, "").split(os.pathsep) if item]
    for path in [*listed, *map(Path, extra)]:
        if not path.is_file():
            raise UsageError(f"trusted C2PA roots {path} do not exist (from {TRUST_ENV} or --trust)")
        files.append(path)
    return files


def _anchors(trust) -> str | None:
    if trust is None:
        trust = trust_files()
    paths = [trust] if isinstance(trust, (str, os.PathLike)) else list(trust)
    texts = [Path(path).read_text(encoding="ascii") for path in paths if Path(path).is_file()]
    return "\n".join(texts) or None


@lru_cache(maxsize=4)
def _context(anchors: str | None, _pid: int):
    # Per process, like the signer: native handles do not survive a fork.
    import c2pa

    settings = dict(_SETTINGS)
    if anchors:
        settings["trust"] = {"user_anchors": anchors}
    return c2pa.Context(c2pa.Settings.from_json(json.dumps(settings)))


def _mtimes(key: SigningKey) -> tuple[int, int]:
    return key.key.stat().st_mtime_ns, key.cert.stat().st_mtime_ns


@lru_cache(maxsize=4)
def _signer(key_path: Path, cert_path: Path, _key_mtime: int, _cert_mtime: int, _pid: int):
    # Cached per file version and process: a forked worker builds its own native signer.
    import c2pa
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    key_pem, chain_pem = key_path.read_bytes(), cert_path.read_bytes()
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
    if isinstance(private, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        algorithm = names.get(private.curve.name)
    elif isinstance(private, rsa.RSAPrivateKey):
        algorithm = "PS256"
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        algorithm = "ED25519"
    else:
        algorithm = None
    if algorithm is None:
        raise UsageError(f"{key_path}: C2PA signs with P-256/384/521 EC, RSA (PS256) or Ed25519 keys")
    try:
        return c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(getattr(c2pa.C2paSigningAlg, algorithm), chain_pem, key_pem, None)
        )
    except c2pa.C2paError as exc:
        raise UsageError(f"{cert_path}: C2PA cannot sign with this certificate chain: {exc}") from None


def keygen(
    out_dir: str | os.PathLike | None = None, name: str = "amari local signer", force: bool = False
) -> SigningKey:
    """Write a local root CA (`root.pem`), a signing certificate (`signer.pem`) and its key (`signer.key`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(out_dir) if out_dir is not None else default_key_dir()
    targets = [folder / KEY_FILE, folder / CERT_FILE, folder / ROOT_FILE]
    if not force and any(path.exists() for path in targets):
        raise UsageError(f"{folder} already holds a signing key; pass --force to replace it")
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=_VALID_DAYS)

    def subject(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "amari (local, self-issued)"),
            ]
        )

    def usage(signature: bool, certificates: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=signature,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=certificates,
            crl_sign=certificates,
            encipher_only=False,
            decipher_only=False,
        )

    root_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = subject(f"{name} root")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(signature=False, certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    # C2PA refuses a self-signed signing certificate, a CA one, one without an allowed EKU, and one
    # without an authority key identifier (C2PA 2.x, section 14.5).
    email_protection, document_signing = (
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"),
    )
    signer = (
        x509.CertificateBuilder()
        .subject_name(subject(name))
        .issuer_name(root_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(signature=True, certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([email_protection, document_signing]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    key_pem = signer_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(folder / KEY_FILE, key_pem, private=True)
    _write(folder / CERT_FILE, signer.public_bytes(serialization.Encoding.PEM))
    _write(folder / ROOT_FILE, root.public_bytes(serialization.Encoding.PEM))
    return SigningKey(key=folder / KEY_FILE, cert=folder / CERT_FILE)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    temporary = path.with_name(f".{path.name}.part")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)
