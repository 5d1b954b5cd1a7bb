"""Compiler-verified tier: compile candidates for the target GPU's architecture offline, read what
the compiler decided (registers, spills, stack frame, shared memory) and check it against the
hardware profile's limits.

A :class:`Verifier` turns one configuration into a :class:`VerifyResult`. Two are written here:

* :class:`TritonVerifier` (triton-fused): Triton's ahead-of-time compile (``tunekit.validation``)
  of each direction's kernel, ptxas's registers and spills, Triton's ``metadata.shared``;
* :class:`CudaVerifier` (cuda-alternating, cuda-fused): the family's programs from
  ``tunekit.kernels.cuda_family(name)`` (the CudaFamily protocol) compiled by
  ``nvcc -cubin -Xptxas -v``, parsed by ``tunekit.compilers.ptxas.parse_ptxas_log``, plus the dynamic shared
  memory of ``launch_dims``. A family whose kernels module does not exist yet is ``unavailable``:
  nothing is compiled and nothing is recorded for it.

A candidate that spills, keeps a stack frame, or breaks a limit is ``rejected`` (dropped by
``tunekit tune --verify``); one whose compile fails is ``failed``. Where the compiler exceeds the
model's prediction but stays within the limits, the result is ``ok`` with the disagreement noted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from tunekit.constraints.occupancy import blocks_per_sm, register_alloc_per_block

__all__ = [
    "VERIFY_STATUSES",
    "CudaVerifier",
    "KernelCheck",
    "TritonVerifier",
    "VerifyResult",
    "Verifier",
    "limit_problems",
    "verified_record",
    "verifier_for",
    "verify_configs",
]

VERIFY_STATUSES = ("ok", "rejected", "failed", "unavailable")


@dataclass(frozen=True)
class KernelCheck:
    """What the compiler decided for one kernel entry at one architecture, beside the model."""

    entry: str
    arch: str  # e.g. "sm_90"
    threads_per_block: int
    registers: int
    spill_bytes: int  # spill stores + loads
    stack_bytes: int  # local memory per thread
    shared_bytes: int  # static + the dynamic bytes the launch requests
    predicted_registers: int | None = None  # the model's bound
    predicted_shared: int | None = None
    blocks: int | None = None  # grid size, where the launch shape is known
    cooperative: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def limit_problems(check: KernelCheck, gpu: Any) -> list[str]:
    """Every limit of ``gpu`` the compiled kernel breaks, in words (empty when it runs as compiled)."""
    out = []
    if check.spill_bytes:
        out.append(f"{check.entry}: spills {check.spill_bytes} B to local memory")
    if check.stack_bytes:
        out.append(f"{check.entry}: {check.stack_bytes} B stack frame (local memory)")
    if check.registers > gpu.max_registers_per_thread:
        out.append(f"{check.entry}: {check.registers} registers > {gpu.max_registers_per_thread} per thread")
    warps = -(-check.threads_per_block // gpu.warp_size)
    if check.threads_per_block > gpu.max_threads_per_block:
        out.append(
            f"{check.entry}: {check.threads_per_block} threads > {gpu.max_threads_per_block} per block"
        )
    block_regs = register_alloc_per_block(check.registers, warps, gpu)
    if block_regs > gpu.registers_per_block:
        out.append(f"{check.entry}: {block_regs:,} registers per block > {gpu.registers_per_block:,}")
    if check.shared_bytes > gpu.shared_memory_per_block_optin:
        out.append(
            f"{check.entry}: {check.shared_bytes:,} B shared memory > "
            f"{gpu.shared_memory_per_block_optin:,} B "
            f"per block on {gpu.name}"
        )
    if check.cooperative and check.blocks is not None and not out:
        resident = gpu.sm_count * blocks_per_sm(warps, check.registers, check.shared_bytes, gpu)
        if check.blocks > resident:
            out.append(f"{check.entry}: cooperative grid of {check.blocks} blocks > {resident} co-resident")
    return out


def _model_notes(check: KernelCheck) -> list[str]:
    notes = []
    if check.predicted_registers is not None and check.registers > check.predicted_registers:
        notes.append(
            f"{check.entry}: {check.registers} registers above the model's {check.predicted_registers}"
        )
    if check.predicted_shared is not None and check.shared_bytes != check.predicted_shared:
        notes.append(
            f"{check.entry}: {check.shared_bytes:,} B shared, the model said {check.predicted_shared:,}"
        )
    return notes


@dataclass(frozen=True)
class VerifyResult:
    """The verdict on one configuration: ok, rejected (spills or a broken limit), failed (did not
    compile) or unavailable (the family has no kernels to compile yet)."""

    config: Any  # tunekit.problem.KernelConfig
    status: str
    kernels: tuple[KernelCheck, ...] = ()
    reasons: tuple[str, ...] = ()  # why rejected/failed/unavailable, or the model's disagreements
    compiler: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in VERIFY_STATUSES:
            raise ValueError(f"status: got {self.status!r}, expected one of {list(VERIFY_STATUSES)}")

    @property
    def kept(self) -> bool:
        """False for a candidate ``--verify`` drops (rejected or failed)."""
        return self.status in ("ok", "unavailable")

    def summary(self) -> str:
        """One line for people."""
        if self.status == "unavailable":
            return f"not verified: {'; '.join(self.reasons)}"
        if self.status != "ok":
            return f"dropped ({self.status}): {'; '.join(self.reasons)}"
        parts = [
            f"{k.entry} {k.arch}: {k.registers} regs, {k.shared_bytes:,} B shared, no spills"
            for k in self.kernels
        ]
        notes = f" (note: {'; '.join(self.reasons)})" if self.reasons else ""
        return f"verified with {self.compiler}: " + "; ".join(parts) + notes

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "backend": self.config.family,
            "status": self.status,
            "kernels": [k.as_dict() for k in self.kernels],
            "reasons": list(self.reasons),
            "compiler": self.compiler,
            "seconds": self.seconds,
        }


def _judge(config: Any, gpu: Any, checks: Sequence[KernelCheck], compiler: str, start: float) -> VerifyResult:
    problems = [p for c in checks for p in limit_problems(c, gpu)]
    notes = [n for c in checks for n in _model_notes(c)]
    status = "rejected" if problems else "ok"
    return VerifyResult(
        config, status, tuple(checks), tuple(problems or notes), compiler, time.perf_counter() - start
    )


class Verifier(Protocol):
    """Compiles one family's configurations for a GPU's architecture without a GPU."""

    family: str

    def prepare(self, configs: Sequence[Any], gpu: Any) -> None:
        """Compile ahead, in one batch, what ``verify`` will need for ``configs`` (may do nothing)."""
        ...

    def verify(self, config: Any, gpu: Any) -> VerifyResult:
        """The compiler's verdict on ``config`` (a KernelConfig of ``family``) for ``gpu``'s arch."""
        ...


# ---- triton-fused ----------------------------------------------------------------------------------


@dataclass
class TritonVerifier:
    """triton-fused through Triton's ahead-of-time compiler (``tunekit.validation.compile_kernels``)."""

    family: str = "triton-fused"
    _cache: dict = field(default_factory=dict, repr=False)  # (TritonCase, arch) -> CompileReport

    @staticmethod
    def _cases(config: Any) -> list[Any]:
        from tunekit.validation import TritonCase

        p, par = config.problem, config.params
        tunables = (par["block_b"], par["num_warps"], par["num_stages"])
        return [TritonCase(p.cell, d, p.dtype, p.head_dim, *tunables, p.batch) for d in p.directions]

    def prepare(self, configs: Sequence[Any], gpu: Any) -> None:
        """Compile every direction of every config at once (one child process in the interpreter)."""
        from tunekit.validation import compile_kernels

        jobs = list(dict.fromkeys((c, gpu.arch) for config in configs for c in self._cases(config)))
        jobs = [job for job in jobs if job not in self._cache]
        if not jobs:
            return
        try:
            reports = compile_kernels(jobs)
        except Exception:  # one bad kernel fails the batch: verify compiles them one by one instead
            return
        self._cache.update(zip(jobs, reports, strict=True))

    def verify(self, config: Any, gpu: Any) -> VerifyResult:
        from tunekit.compilers.build import SUPPORTED_ARCHS
        from tunekit.validation import compile_kernels, predict

        start = time.perf_counter()
        if gpu.arch not in SUPPORTED_ARCHS:
            return VerifyResult(
                config, "unavailable", reasons=(f"Triton AOT checks cover sm {SUPPORTED_ARCHS}",)
            )
        cases = self._cases(config)
        try:
            missing = [c for c in cases if (c, gpu.arch) not in self._cache]
            for case, report in zip(missing, compile_kernels([(c, gpu.arch) for c in missing]), strict=True):
                self._cache[(case, gpu.arch)] = report
        except Exception as exc:  # a kernel that does not compile is a failed candidate, not a crash
            reason = " ".join(str(exc).split())[-300:]
            return VerifyResult(config, "failed", reasons=(f"Triton compile failed: {reason}",))
        checks = []
        for case in cases:
            report, model = self._cache[(case, gpu.arch)], predict(case, gpu)
            checks.append(
                KernelCheck(
                    entry=report.kernel,
                    arch=f"sm_{gpu.arch}",
                    threads_per_block=case.num_warps * gpu.warp_size,
                    registers=report.registers,
                    spill_bytes=report.spill_stores_bytes + report.spill_loads_bytes,
                    stack_bytes=report.local_bytes,
                    shared_bytes=report.shared_bytes,
                    predicted_registers=model.registers,
                    predicted_shared=model.shared_bytes,
                )
            )
        return _judge(config, gpu, checks, f"triton {_triton_version()} + ptxas", start)


def _triton_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("triton")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "?"


# ---- CUDA families ---------------------------------------------------------------------------------


@dataclass
class CudaVerifier:
    """A CUDA family through ``tunekit.kernels.cuda_family(family)``, compiled by
    ``tunekit.compilers.compile_program`` (nvcc ``-Xptxas -v`` or NVRTC; cached by source and arch)."""

    family: str
    tool: str = "nvcc"  # "nvcc" or "nvrtc"

    def prepare(self, configs: Sequence[Any], gpu: Any) -> None:
        """Nothing ahead: each program is compiled once, when first verified (the compile cache)."""

    def _module(self) -> tuple[Any, str | None]:
        from tunekit.kernels import CUDA_FAMILIES, cuda_family

        name = CUDA_FAMILIES.get(self.family, f"tunekit.kernels.{self.family.replace('-', '_')}")
        try:
            return cuda_family(self.family), None
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                return None, f"{self.family} has no kernels module yet ({name}): nothing to compile"
            raise

    def verify(self, config: Any, gpu: Any) -> VerifyResult:
        from tunekit.compilers import CompileError
        from tunekit.compilers.cuda import compile_program, tool_problem

        start = time.perf_counter()
        module, missing = self._module()
        if module is None:
            return VerifyResult(config, "unavailable", reasons=(missing,))
        problem = tool_problem(self.tool)
        if problem is not None:
            return VerifyResult(config, "unavailable", reasons=(problem,))
        checks: list[KernelCheck] = []
        version = ""
        try:
            for program in module.programs(config):
                compiled = compile_program(program, gpu.arch, self.tool, sass=False)
                version = compiled.tool
                for entry in program.entries:
                    checks.append(self._check(module, config, entry, compiled.entry(entry.name)))
        except (CompileError, RuntimeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[-300:]
            return VerifyResult(config, "failed", tuple(checks), (reason,), version)
        return _judge(config, gpu, checks, version, start)

    @staticmethod
    def _check(module: Any, config: Any, entry: Any, compiled: Any) -> KernelCheck:
        usage = compiled.usage
        dims = module.launch_dims(config, compiled.entry)
        predicted = module.predicted(config, compiled.entry)
        return KernelCheck(
            entry=compiled.entry,
            arch=usage.arch,
            threads_per_block=dims.threads_per_block,
            registers=usage.registers,
            spill_bytes=usage.spill_stores_bytes + usage.spill_loads_bytes,
            stack_bytes=usage.local_bytes,
            shared_bytes=usage.static_shared_bytes + dims.shared_bytes,
            predicted_registers=predicted.get("registers_per_thread"),
            predicted_shared=predicted.get("shared_memory_bytes_per_block"),
            blocks=dims.blocks,
            cooperative=bool(entry.cooperative),
        )


# ---- running a set of candidates -------------------------------------------------------------------


def verifier_for(family: str) -> Verifier:
    """The verifier of a kernel family (ValueError naming the families)."""
    from tunekit.problem import FAMILIES

    if family == "triton-fused":
        return TritonVerifier()
    if family in FAMILIES:
        return CudaVerifier(family)
    raise ValueError(f"family: got {family!r}, expected one of {list(FAMILIES)}")


def verify_configs(
    configs: Sequence[Any], gpu: Any, verifiers: Mapping[str, Verifier] | None = None
) -> list[VerifyResult]:
    """Verify each configuration with its family's verifier (one verifier per family, reused)."""
    chosen: dict[str, Verifier] = dict(verifiers or {})
    for family in dict.fromkeys(c.family for c in configs):
        if family not in chosen:
            chosen[family] = verifier_for(family)
        chosen[family].prepare([c for c in configs if c.family == family], gpu)
    return [chosen[config.family].verify(config, gpu) for config in configs]


def verified_record(base: Any, result: VerifyResult) -> Any:
    """The verified-tier record of ``result`` over its predicted record ``base`` (a
    tunekit.db.Record); None for an unavailable family (nothing was compiled)."""
    if result.status == "unavailable":
        return None
    status = {"ok": "ok", "rejected": "rejected", "failed": "failed"}[result.status]
    compiled = {"compiler": result.compiler, "kernels": [k.as_dict() for k in result.kernels]}
    return replace(
        base, tier="compiler-verified", status=status, compiled=compiled, note="; ".join(result.reasons)
    )
