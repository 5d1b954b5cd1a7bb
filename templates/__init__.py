"""Jinja templates for generated kernels (package data: ``triton/*.j2``, ``cuda/*.j2``)."""
