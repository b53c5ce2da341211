"""amari keygen: a local signing key and certificate chain for C2PA content credentials."""

from __future__ import annotations

HELP = "create a local key and certificate chain that sign amari's C2PA content credentials"
DESCRIPTION = """\
Write a local, self-issued certificate chain for C2PA content credentials:

  signer.key   the ES256 private key (readable by you only)
  signer.pem   its certificate (not a CA, digitalSignature, emailProtection/documentSigning EKUs)
  root.pem     the root CA that issued it (its private key is discarded); `amari verify` trusts it

By default they go into the cache folder's c2pa/ folder, where amari finds them without further
setup: from then on every image amari writes or marks carries signed credentials. Elsewhere (--out),
point AMARI_C2PA_KEY at signer.key. Other C2PA validators will call this signer valid but untrusted;
for credentials others trust, use a certificate from a CA on the C2PA trust list (AMARI_C2PA_KEY,
AMARI_C2PA_CERT). Needs the optional extra: pip install 'amari[c2pa]'."""


def add_arguments(parser) -> None:
    parser.add_argument("--out", metavar="DIR", help="folder to write into (default: <cache>/c2pa)")
    parser.add_argument("--name", default="amari local signer", help="the signer's common name")
    parser.add_argument("--force", action="store_true", help="replace a key already there")


def run(args) -> int:
    from amari.errors import UsageError
    from amari.provenance import credentials

    if not credentials.is_available():
        raise UsageError(f"C2PA support is not installed: {credentials.INSTALL_HINT}")
    key = credentials.keygen(args.out, name=args.name, force=args.force)
    print(f"private key   {key.key}")
    print(f"certificate   {key.cert}")
    print(f"trust anchor  {key.root}")
    if args.out is not None and key.key.parent.resolve() != credentials.default_key_dir().resolve():
        print(f"to sign with it: export {credentials.KEY_ENV}={key.key}")
    return 0
