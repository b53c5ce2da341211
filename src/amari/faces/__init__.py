"""Faces: dlib's detection and 128-d descriptors, their cache, groups of faces and the sim-score, head pose.

The modules are imported by their full names; this package imports nothing, so that a light
module here never pulls in a heavy one."""
