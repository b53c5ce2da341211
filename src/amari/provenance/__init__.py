"""Provenance: the marks on every image amari writes (watermark, fingerprint, C2PA, metadata) and reading them back.

The modules are imported by their full names; this package imports nothing, so that a light
module here never pulls in a heavy one."""
