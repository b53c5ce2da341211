"""Execution: devices, worker processes, Ray clusters, and the processes they leave behind.

The modules are imported by their full names; this package imports nothing, so that a light
module here never pulls in a heavy one."""
