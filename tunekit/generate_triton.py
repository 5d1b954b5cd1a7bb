"""The triton-fused variant of ``tunekit generate``: the fused kernels as modules of the package.

The kernel modules are exactly what tunekit's own runtime renders for the configuration
(:func:`tunekit.codegen.render`); the package's ``_runtime.py`` (``templates/generate/
triton_runtime.py.j2``) launches them with the configuration's tunables as constants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunekit.generate import Choice

__all__ = ["TritonVariant"]


class TritonVariant:
    """Kernel files and runtime context of a triton-fused package."""

    runtime_modules = ("triton",)

    def _roles(self, choice: Choice) -> tuple[str, ...]:
        return ("forward", "backward") if choice.problem.direction == "both" else ("forward",)

    def kernel_files(self, choice: Choice) -> dict[str, bytes]:
        """``fused_forward.py`` (and ``fused_backward.py`` for training), as tunekit renders them."""
        from tunekit.cells import get_cell
        from tunekit.codegen import KERNEL_NAMES, KernelSpec, render

        cell = get_cell(choice.problem.cell)
        return {
            f"{KERNEL_NAMES[role]}.py": render(KernelSpec(cell, role), choice.config).encode("utf-8")
            for role in self._roles(choice)
        }

    def context(self, choice: Choice) -> dict[str, Any]:
        """The launch constants, checked by the runtime's own reader of a configuration: the tunables,
        each kernel's constexprs (the backward's dot forms follow the GPU's architecture), the
        register cap the kernels compile with and the D they run with (rows 16-byte aligned)."""
        from tunekit.constraints.triton_kernel import kernel_head_dim, register_cap
        from tunekit.kernels.triton_fused import kernel_constexprs, launch_params

        p = choice.problem
        training = p.direction == "both"
        params = launch_params(
            choice.config, p.cell, p.head_dim, p.dtype, batch=p.batch, heads=p.heads, training=training,
            arch=choice.profile.arch,
        )  # fmt: skip
        return {
            "config": {
                "block_b": params.block_b,
                "num_warps": params.num_warps,
                "num_stages": params.num_stages,
                "d_pad": params.d_pad,
            },
            "literals": {
                "dot_precision": params.dot_precision,
                "forward_constexprs": kernel_constexprs("forward", p.dtype, params),
                "backward_constexprs": kernel_constexprs("backward", p.dtype, params) if training else {},
                "maxnreg": register_cap(params.num_warps, choice.profile),
                "d_run": kernel_head_dim(p.head_dim),
            },
        }

    def runtime_files(self, context: dict[str, Any]) -> dict[str, bytes]:
        """``_runtime.py``: host launchers and autograd (templates/generate/triton_runtime.py.j2)."""
        from tunekit.codegen import render_template

        return {"_runtime.py": render_template("generate/triton_runtime.py.j2", context).encode("utf-8")}
