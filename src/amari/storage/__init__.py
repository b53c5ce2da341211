"""Storage: atomic files and hashes, SQLite, image files, the folder layout, the evaluation's results folder.

The modules are imported by their full names; this package imports nothing, so that a light
module here never pulls in a heavy one."""
