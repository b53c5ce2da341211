"""`amari audit`: a leakage audit of mined identities against a gallery of real people's photos.

- `config`: the settings (`AuditConfig`); `gallery`: a gallery folder embedded, or an index file;
- `search`: exact search (numpy) and the approximate index (faiss) for large galleries;
- `stage`: the audit (`run`), its CSVs and summary; `html`: its page.
"""

from amari.audit.config import AuditConfig
from amari.lazy import lazy_exports

__getattr__ = lazy_exports(
    __name__,
    {
        "run": "amari.audit.stage:run",
        "AuditResult": "amari.audit.stage:AuditResult",
        "read_summary": "amari.audit.stage:read_summary",
        "read_rows": "amari.audit.stage:read_rows",
        "open_gallery": "amari.audit.gallery:open_gallery",
        "save_index": "amari.audit.gallery:save_index",
    },
)

__all__ = ["AuditConfig", "AuditResult", "open_gallery", "read_rows", "read_summary", "run", "save_index"]
