"""Settings: one frozen dataclass per stage, loaded from TOML, and the command-line options made from it.

The modules are imported by their full names; this package imports nothing, so that a light
module here never pulls in a heavy one."""
