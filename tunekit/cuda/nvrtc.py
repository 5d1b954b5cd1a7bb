"""The GPU runner: NVRTC-compiled cubins launched through cuda.core on torch's current stream.

No host compiler and no torch C++ extension: :func:`tunekit.compilers.nvrtc.compile_cubin` turns
a :class:`~tunekit.cuda.CudaProgram` into a cubin for the device's arch (cached on disk by name,
source + header digest, arch and NVRTC version, and here in memory per device), cuda.core loads it
(``ObjectCode.from_cubin``) and launches an entry with a ``LaunchConfig`` on the stream torch is
using, tensors passed by ``data_ptr()`` and scalars typed by the entry's parameter kinds.

Before anything runs, a launch over the limits is refused (:class:`~tunekit.cuda.LaunchRefused`,
with the numbers): more threads per block than the compiled kernel allows, static + dynamic shared
memory over the device's opt-in limit, and a cooperative grid larger than the driver's occupancy
API says can be co-resident. Needs ``pip install 'tunekit[cuda]'``.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

from tunekit.compilers.build import SUPPORTED_ARCHS, Build
from tunekit.compilers.nvrtc import INSTALL_HINT, compile_cubin
from tunekit.cuda import (
    CudaProgram,
    CudaUnavailableError,
    KernelEntry,
    KernelFault,
    LaunchDims,
    LaunchRefused,
)

__all__ = ["DEFAULT_DYNAMIC_SHARED_LIMIT", "NvrtcRunner", "compile_cubin", "pack_args", "runner"]

# CUDA C++ Programming Guide, "Shared Memory" (compute capability 7.0+): a block may use more than
# 48 KB of shared memory only as dynamic shared memory after opting in with the kernel attribute
# MAX_DYNAMIC_SHARED_SIZE_BYTES; without it static + dynamic stay <= 48 KB.
DEFAULT_DYNAMIC_SHARED_LIMIT = 48 * 1024

# kind -> (ctypes type, lowest, highest) of a scalar parameter; "ptr" is passed as a Python int,
# which cuda.core packs as intptr_t (a 64-bit device address).
_SCALARS: dict[str, tuple[Any, int, int]] = {
    "i32": (ctypes.c_int32, -(2**31), 2**31 - 1),
    "u32": (ctypes.c_uint32, 0, 2**32 - 1),
    "i64": (ctypes.c_int64, -(2**63), 2**63 - 1),
}


def pack_args(entry: KernelEntry, args: Sequence[Any], device: Any) -> list[Any]:
    """Kernel arguments for cuda.core's ``launch``, checked against ``entry``'s parameters.

    ``ptr``: a contiguous torch.Tensor on ``device`` (its ``data_ptr()``); ``i32``/``u32``/``i64``:
    a Python int within the type's range; ``f32``: an int or float. ValueError names the parameter.
    """
    import torch

    device = torch.device(device)
    if len(args) != len(entry.params):
        names = [n for n, _ in entry.params]
        raise ValueError(f"{entry.name}: got {len(args)} arguments, expected {len(names)}: {names}")
    packed: list[Any] = []
    for (name, kind), value in zip(entry.params, args, strict=True):
        where = f"{entry.name} argument {name!r} ({kind})"
        if kind == "ptr":
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{where}: got {type(value).__name__}, expected a torch.Tensor")
            if value.device != device:
                raise ValueError(f"{where}: tensor on {value.device}, expected {device}")
            if not value.is_contiguous():
                raise ValueError(f"{where}: got a non-contiguous tensor, expected .contiguous()")
            packed.append(int(value.data_ptr()))
        elif kind == "f32":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where}: got {value!r}, expected a Python float")
            packed.append(ctypes.c_float(float(value)))
        else:
            ctype, low, high = _SCALARS[kind]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where}: got {value!r}, expected a Python int")
            if not low <= value <= high:
                raise ValueError(f"{where}: got {value}, expected {low}..{high}")
            packed.append(ctype(value))
    return packed


def _driver_call(result: Any, what: str) -> None:
    from cuda.bindings import driver

    error = result[0] if isinstance(result, tuple) else result
    if error != driver.CUresult.CUDA_SUCCESS:
        raise KernelFault(f"{what}: {error}")


class NvrtcRunner:
    """Launches CudaPrograms on one CUDA device (see the module docstring)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"device: got {self.device}, expected a CUDA device")
        if not torch.cuda.is_available():
            raise CudaUnavailableError(f"NvrtcRunner: torch sees no CUDA GPU for {self.device}")
        try:
            import cuda.core as core
        except ImportError as error:
            raise CudaUnavailableError(f"NvrtcRunner needs cuda-core ({error}); {INSTALL_HINT}") from error
        self._core = core
        self.index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.device = torch.device("cuda", self.index)
        self._dev = core.Device(self.index)
        self._dev.set_current()  # the primary context, which torch's runtime uses too
        self.arch = int(self._dev.arch)
        if self.arch not in SUPPORTED_ARCHS:
            known = ", ".join(f"sm_{a}" for a in SUPPORTED_ARCHS)
            raise CudaUnavailableError(
                f"GPU {self._dev.name} is sm_{self.arch}; tunekit's CUDA kernels target {known}"
            )
        self._props = self._dev.properties
        self._lock = threading.Lock()
        self._modules: dict[tuple[str, str], Any] = {}  # (name, digest) -> ObjectCode
        self._kernels: dict[tuple[str, str, str], Any] = {}  # (name, digest, entry) -> Kernel
        self._dynamic_set: dict[tuple[str, str, str], int] = {}  # the opt-in set so far
        self._streams: dict[int, Any] = {}

    def build(self, program: CudaProgram) -> Build:
        """The NVRTC build of ``program`` for this device's arch (disk-cached)."""
        return compile_cubin(program, self.arch)

    def kernel(self, program: CudaProgram, entry: str) -> Any:
        """The loaded cuda.core Kernel of ``entry`` (compiled and loaded once per program and device)."""
        program.entry(entry)  # ValueError listing the entries
        key = (program.name, program.digest, entry)
        with self._lock:
            if key not in self._kernels:
                module_key = key[:2]
                if module_key not in self._modules:
                    code = self._core.ObjectCode.from_cubin(self.build(program).cubin, name=program.name)
                    self._modules[module_key] = code
                self._kernels[key] = self._modules[module_key].get_kernel(entry)
            return self._kernels[key]

    def _stream(self) -> Any:
        import torch

        handle = int(torch.cuda.current_stream(self.device).cuda_stream)
        if handle not in self._streams:
            self._streams[handle] = self._core.Stream.from_handle(handle)
        return self._streams[handle]

    def _opt_in(self, key: tuple[str, str, str], kernel: Any, static: int, dynamic: int) -> None:
        """Raise the kernel's max dynamic shared memory when static + dynamic passes 48 KB."""
        if static + dynamic <= DEFAULT_DYNAMIC_SHARED_LIMIT or self._dynamic_set.get(key, -1) >= dynamic:
            return
        from cuda.bindings import driver

        attribute = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        result = driver.cuKernelSetAttribute(attribute, dynamic, kernel.handle, driver.CUdevice(self.index))
        _driver_call(result, f"{key[2]}: setting max dynamic shared memory to {dynamic} B")
        self._dynamic_set[key] = dynamic

    def check(self, program: CudaProgram, entry: str, dims: LaunchDims) -> Any:
        """Refuse a launch over the limits (LaunchRefused with the numbers); return the Kernel."""
        spec = program.entry(entry)
        kernel = self.kernel(program, entry)
        attrs = kernel.attributes
        threads, static, dynamic = dims.threads_per_block, attrs.shared_size_bytes, dims.shared_bytes
        if threads > attrs.max_threads_per_block:
            raise LaunchRefused(
                f"{entry}: {threads} threads per block > {attrs.max_threads_per_block}, the most this "
                f"compiled kernel launches with ({attrs.num_regs} registers per thread, __launch_bounds__)"
            )
        optin = self._props.max_shared_memory_per_block_optin
        if static + dynamic > optin:
            raise LaunchRefused(
                f"{entry}: {static} B static + {dynamic} B dynamic shared memory > {optin} B opt-in limit "
                f"per block on {self._dev.name}"
            )
        self._opt_in((program.name, program.digest, entry), kernel, static, dynamic)
        if spec.cooperative:
            if not self._props.cooperative_launch:
                raise LaunchRefused(f"{entry}: {self._dev.name} does not support cooperative launches")
            per_sm = kernel.occupancy.max_active_blocks_per_multiprocessor(threads, dynamic)
            sms = self._props.multiprocessor_count
            if dims.blocks > per_sm * sms:
                raise LaunchRefused(
                    f"{entry}: a cooperative grid of {dims.blocks} blocks cannot be co-resident: the "
                    f"driver's occupancy API allows {per_sm} blocks per SM x {sms} SMs = {per_sm * sms} with "
                    f"{threads} threads, {attrs.num_regs} registers per thread and {static} + {dynamic} B "
                    "shared memory"
                )
        return kernel

    def launch(self, program: CudaProgram, entry: str, dims: LaunchDims, args: Sequence[Any]) -> None:
        """Enqueue ``entry`` on torch's current stream (see tunekit.cuda.CudaRunner.launch)."""
        spec = program.entry(entry)
        packed = pack_args(spec, args, self.device)
        self._dev.set_current()
        kernel = self.check(program, entry, dims)
        config = self._core.LaunchConfig(
            grid=dims.grid, block=dims.block, shmem_size=dims.shared_bytes, is_cooperative=spec.cooperative
        )
        try:
            self._core.launch(self._stream(), config, kernel, *packed)
        except Exception as error:  # cuda.core's CUDAError names the driver's result
            text = str(error)
            if any(word in text for word in ("OUT_OF_RESOURCES", "TOO_LARGE", "INVALID_VALUE")):
                raise LaunchRefused(f"{entry}: the driver refused the launch {dims}: {text}") from error
            raise KernelFault(f"{entry}: launch failed {dims}: {text}") from error


_RUNNERS: dict[int, NvrtcRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner(device: Any) -> NvrtcRunner:
    """The NvrtcRunner of CUDA ``device``, one per device and process, so its loaded kernels stay
    loaded between launches (what :func:`tunekit.cuda.runner_for` returns on CUDA tensors)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device: got {device}, expected a CUDA device")
    if not torch.cuda.is_available():
        raise CudaUnavailableError(f"NvrtcRunner: torch sees no CUDA GPU for {device}")
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _RUNNERS_LOCK:
        if index not in _RUNNERS:
            _RUNNERS[index] = NvrtcRunner(torch.device("cuda", index))
        return _RUNNERS[index]
