"""Integer-CSP library (installed as ``tunekit.solvers``); needs neither torch nor a GPU."""
