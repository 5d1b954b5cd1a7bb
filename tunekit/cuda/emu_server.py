"""The emulator's helper process and the launch request it reads (a ctypes mirror of
``templates/cuda/emu/tk_emu_protocol.h``).

One helper per Python process, started on first use from ``server-<hash>`` (tunekit.cuda.emu_build)
and ended with the process. A launch is one anonymous shared mapping (memfd): the request, then
the argument buffers. The helper forks a child per launch that runs the kernel on that mapping, so
the kernel's writes land in it, and a crash, a fault or a time-out ends only the child.
"""

from __future__ import annotations

import atexit
import ctypes
import mmap
import os
import socket
import subprocess
import threading

from tunekit.cuda import KernelFault

__all__ = ["MAX_PARAMS", "Param", "Request", "Server", "Status", "server"]

MAGIC = 0x3130554D454B54  # "TKEMU01"
MAX_PARAMS = 64
KINDS = {"ptr": 0, "i32": 1, "u32": 2, "i64": 3, "f32": 4}


class Status:
    OK, FAULT, REFUSED, STATIC_GREW, TIMEOUT, CRASH, LOAD_ERROR, NOT_RUN = range(8)


class Param(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("offset", ctypes.c_uint64),
        ("bytes", ctypes.c_uint64),
        ("bits", ctypes.c_uint64),
        ("name", ctypes.c_char * 64),
    ]


class Request(ctypes.Structure):
    _fields_ = [
        ("magic", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
        ("library", ctypes.c_char * 1024),
        ("entry", ctypes.c_char * 128),
        ("grid", ctypes.c_uint32 * 3),
        ("block", ctypes.c_uint32 * 3),
        ("dynamic_shared", ctypes.c_uint64),
        ("static_shared_checked", ctypes.c_uint64),
        ("stack_bytes", ctypes.c_uint64),
        ("timeout_s", ctypes.c_double),
        ("cooperative", ctypes.c_uint32),
        ("nparams", ctypes.c_uint32),
        ("params", Param * MAX_PARAMS),
        ("status", ctypes.c_int32),
        ("signal", ctypes.c_int32),
        ("static_shared_used", ctypes.c_uint64),
        ("switches", ctypes.c_uint64),
        ("fibers", ctypes.c_uint64),
        ("guard_pages", ctypes.c_uint64),
        ("run_ns", ctypes.c_uint64),
        ("setup_ns", ctypes.c_uint64),
        ("child_ns", ctypes.c_uint64),
        ("message", ctypes.c_char * 8192),
    ]


def check_layout(library: ctypes.CDLL) -> None:
    """The C struct and this mirror agree (size and key offsets), or RuntimeError."""
    out = (ctypes.c_uint64 * 5)()
    library.tk_emu_layout(out)
    ours = (
        ctypes.sizeof(Request),
        Request.params.offset,
        Request.status.offset,
        Request.message.offset,
        ctypes.sizeof(Param),
    )
    if tuple(out) != ours:
        raise RuntimeError(
            f"tk_emu_request layout: C {tuple(out)} != Python {ours} (tk_emu_protocol.h changed?)"
        )


class Mapping:
    """An anonymous shared mapping (memfd) of ``size`` bytes: the fd for the helper, the bytes for us."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fd = os.memfd_create("tunekit-emu-launch", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            self.map = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise
        self._anchor = ctypes.c_char.from_buffer(self.map)
        self.address = ctypes.addressof(self._anchor)

    def request(self) -> Request:
        return Request.from_address(self.address)

    def close(self) -> None:
        del self._anchor
        self.map.close()
        os.close(self.fd)


class Server:
    """The helper process: ``run(mapping)`` sends one launch and waits for its end."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._pid = os.getpid()

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [self.executable, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            theirs.close()
        self._sock = ours

    def stop(self) -> None:
        """End the helper (it also ends by itself when this process does)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def run(self, mapping: Mapping, timeout_s: float) -> None:
        """Launch the request in ``mapping``; returns when the helper has filled in the reply."""
        with self._lock:
            if self._pid != os.getpid():  # a forked Python: its parent's helper is not ours
                self._proc, self._sock, self._pid = None, None, os.getpid()
            if self._sock is None or self._proc is None or self._proc.poll() is not None:
                self._start()
            sock = self._sock
            sock.settimeout(timeout_s + 30.0 if timeout_s > 0 else None)
            try:
                socket.send_fds(sock, [b"L"], [mapping.fd])
                reply = sock.recv(16)
            except (OSError, TimeoutError) as exc:
                self._abandon()
                raise KernelFault(
                    f"the CUDA emulator's helper process failed ({exc}); it is restarted next launch"
                ) from exc
            if reply != b"D":
                self._abandon()
                raise KernelFault(
                    "the CUDA emulator's helper process ended during a launch; it is restarted next launch"
                )

    def _abandon(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        if self._sock is not None:
            self._sock.close()
        self._proc, self._sock = None, None


_SERVER: Server | None = None
_SERVER_LOCK = threading.Lock()


def server(executable: str) -> Server:
    """The process's helper for ``executable`` (one at a time; a new executable replaces the old)."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None or _SERVER.executable != executable:
            if _SERVER is not None:
                _SERVER.stop()
            _SERVER = Server(executable)
        return _SERVER


@atexit.register
def _stop_server() -> None:
    if _SERVER is not None and _SERVER._pid == os.getpid():
        _SERVER.stop()
