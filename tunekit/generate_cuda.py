"""The CUDA variant of ``tunekit generate``: sources, tk_cuda.cuh, prebuilt cubins and a cuda.core launcher.

What a CUDA family gives (through :func:`tunekit.kernels.cuda_family`, so the package holds what
tunekit's own runtime launches):

* ``programs(config)``, ``launch_dims(config, entry)``: the :class:`tunekit.cuda.CudaProgram`\\ s
  and each entry's launch shape (the :class:`tunekit.kernels.CudaFamily` protocol);
* ``package_runtime(config, context) -> str | Mapping[str, str]``: the source of the package's
  ``_runtime.py``, rendered from the family's own templates, or a mapping of module files (top
  level, ``.py``) to sources that holds ``_runtime.py`` (the real families add ``_host.py``: the host
  code tunekit's own runtime runs, :mod:`tunekit.kernels.host`). ``_runtime.py`` defines ``rnn(Wx,
  R, b, states=None)``; the modules import only torch and the package's own modules, and launch
  through ``_cuda.launch(entry, args)``. ``context`` is the package's template context (problem,
  cell, configuration, literals). A family module without it is named as one this tunekit cannot
  package yet.

The package gets ``cuda/<program>.cu`` (the source, kept for rebuilding), ``cuda/tk_cuda.cuh``
(the primitives header; its emulator branch is only taken by a host compiler, which the package
never uses), ``cuda/<program>.<sm_XX>.cubin`` (NVRTC, compile only, for the profile's
architecture: the user's machine needs no compiler) and ``_cuda.py`` (templates/generate/
cuda_launcher.py.j2: loads the cubin, or compiles the kept source with NVRTC on another
architecture, and launches on torch's current stream).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from tunekit.generate_tree import check_relative_path

if TYPE_CHECKING:
    from tunekit.generate import Choice

__all__ = ["PACKAGE_RUNTIME", "CudaVariant", "packaging_gap"]

# the function a CUDA family module defines to be packaged (see the module docstring)
PACKAGE_RUNTIME = "package_runtime"
HEADER = "tk_cuda.cuh"
# the package's own files, which a family's runtime modules may not replace
RESERVED = ("__init__.py", "_config.py", "_layer.py", "_cuda.py", "README.md")


def packaging_gap(family: str) -> str | None:
    """None when ``family``'s module can be packaged, else what is missing."""
    from tunekit.kernels import CUDA_FAMILIES, cuda_family

    module = cuda_family(family)
    if not callable(getattr(module, PACKAGE_RUNTIME, None)):
        return (
            f"{family} kernels exist but cannot be packaged yet: {CUDA_FAMILIES[family]} has no "
            f"{PACKAGE_RUNTIME}(config, context) rendering the package's host code"
        )
    return None


class CudaVariant:
    """Kernel files and runtime of a CUDA family's package."""

    runtime_modules = ("cuda.core",)

    def __init__(self, family: str) -> None:
        from tunekit.kernels import cuda_family

        self.family = family
        self.module = cuda_family(family)

    def _programs(self, choice: Choice) -> tuple[Any, ...]:
        programs = tuple(self.module.programs(choice.config))
        entries = [entry.name for program in programs for entry in program.entries]
        if len(set(entries)) != len(entries):
            raise ValueError(
                f"{self.family}: entry names repeat across programs ({entries}); expected unique"
            )
        for program in programs:
            check_relative_path(f"cuda/{program.name}.cu")
        return programs

    def kernel_files(self, choice: Choice) -> dict[str, bytes]:
        """Each program's source and its cubin for the profile's arch, and the header."""
        from tunekit.compilers.nvrtc import compile_cubin

        sm = choice.profile.sm
        files = {}
        for program in self._programs(choice):
            files[f"cuda/{program.name}.cu"] = program.source.encode("utf-8")
            files[f"cuda/{program.name}.{sm}.cubin"] = bytes(
                compile_cubin(program, choice.profile.arch).cubin
            )
        header = resources.files("tunekit.templates").joinpath("cuda", HEADER)
        files[f"cuda/{HEADER}"] = header.read_bytes()
        return files

    def context(self, choice: Choice) -> dict[str, Any]:
        """The programs' files, entries and launch shapes, as literals for ``_cuda.py``."""
        from tunekit.compilers.nvrtc import nvrtc_version

        sm = choice.profile.sm
        programs, launch = {}, {}
        for program in self._programs(choice):
            programs[program.name] = {
                "source": f"cuda/{program.name}.cu",
                "cubins": {sm: f"cuda/{program.name}.{sm}.cubin"},
                "entries": {e.name: (tuple(e.params), e.cooperative) for e in program.entries},
            }
            for entry in program.entries:
                dims = self.module.launch_dims(choice.config, entry.name)
                launch[entry.name] = (tuple(dims.grid), tuple(dims.block), int(dims.shared_bytes))
        return {
            "config": choice.config.params,
            "literals": {"programs": programs, "launch": launch},
            "versions": {"nvrtc": nvrtc_version()},
        }

    def runtime_files(self, context: dict[str, Any]) -> dict[str, bytes]:
        """``_cuda.py`` (the launcher) and ``_runtime.py`` (the family's host code)."""
        from tunekit.codegen import render_template

        runtime = getattr(self.module, PACKAGE_RUNTIME)(context["choice"].config, context)
        modules = {"_runtime.py": runtime} if isinstance(runtime, str) else runtime
        bad = not isinstance(modules, Mapping) or not all(isinstance(v, str) for v in modules.values())
        if bad or "def rnn(" not in modules.get("_runtime.py", ""):
            raise ValueError(
                f"{self.family}: {PACKAGE_RUNTIME} must return the source of _runtime.py (defining rnn), "
                "or a mapping of module files to sources that holds it"
            )
        files = {}
        for path, text in modules.items():
            if path in RESERVED or not path.endswith(".py") or "/" in path:
                raise ValueError(
                    f"{self.family}: {PACKAGE_RUNTIME} returned {path!r}, expected a new module file"
                )
            files[check_relative_path(path)] = text.encode("utf-8")
        files["_cuda.py"] = render_template("generate/cuda_launcher.py.j2", context).encode("utf-8")
        return files
