"""Chunked execution of sweeps over parameters, with private generators.

The torch backend walks every parameter in chunks of `chunk_size` elements (a
multiple of the stream's BLOCK_SIZE). Each chunk is handled by one worker
thread with its own buffers and its own `torch.Generator`, so the extra
memory of a sweep is `threads x buffers x chunk_size` floats, whatever the
size of the largest parameter, and the result does not depend on which
thread ran which chunk.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

import torch

from ..validation import integer
from .keys import BLOCK_SIZE
from .slots import ParamSlot
from .streams import GeneratorStream, PhiloxStream


class Workspace:
    """Per-thread scratch: reusable float32 buffers and generators, per device."""

    def __init__(self):
        self._buffers: dict[tuple, torch.Tensor] = {}
        self._generators: dict[torch.device, torch.Generator] = {}

    def buffer(self, name: str, n: int, device: torch.device, dtype=torch.float32) -> torch.Tensor:
        key = (name, device, dtype)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < n:
            buf = torch.empty(n, dtype=dtype, device=device)
            self._buffers[key] = buf
        return buf[:n]

    def generator(self, device: torch.device) -> torch.Generator:
        gen = self._generators.get(device)
        if gen is None:
            gen = self._generators[device] = torch.Generator(device=device)
        return gen

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


ChunkFn = Callable[[ParamSlot, int, int, Workspace], object]


class TorchBackend:
    """Runs a function over every (parameter, chunk) with a small thread pool.

    Args:
        chunk_size: elements per chunk; rounded up to a multiple of BLOCK_SIZE.
            It sets the sweep's scratch memory, never the values of z.
        threads: worker threads for CPU parameters (default: torch's intra-op
            thread count). Normal generation in torch is single-threaded per
            call, so two workers on two cores nearly double sweep throughput.
    """

    name = "torch"
    stream_name = GeneratorStream.name  # what _make_stream draws, known before it is built

    def __init__(self, chunk_size: int = 2 * BLOCK_SIZE, threads: int | None = None):
        integer("chunk_size", chunk_size, minimum=1, what="elements per sweep chunk")
        if threads is not None:
            integer("threads", threads, minimum=1, what="sweep worker threads")
        self.stream = self._make_stream()
        self.chunk_size = -(-chunk_size // BLOCK_SIZE) * BLOCK_SIZE
        self.threads = threads if threads is not None else max(1, torch.get_num_threads())
        self._local = threading.local()
        self._workspaces: list[Workspace] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _make_stream(self):
        return GeneratorStream()

    def _workspace(self) -> Workspace:
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = self._local.ws = Workspace()
            with self._lock:
                self._workspaces.append(ws)
        return ws

    def chunks(self, slots: Iterable[ParamSlot]) -> list[tuple[ParamSlot, int, int]]:
        out = []
        for slot in slots:
            out.extend(self.ranges(slot, 0, slot.numel))
        return out

    def ranges(self, slot: ParamSlot, start: int, stop: int) -> list[tuple[ParamSlot, int, int]]:
        """Chunks of elements [start, stop) of one parameter; `start` is a multiple of BLOCK_SIZE."""
        return [(slot, s, min(s + self.chunk_size, stop)) for s in range(start, stop, self.chunk_size)]

    def map(self, slots: Iterable[ParamSlot], fn: ChunkFn) -> list:
        """Applies fn(slot, start, stop, workspace) to every chunk; results in chunk order."""
        return self.run(self.chunks(slots), fn)

    def run(self, tasks: list[tuple[ParamSlot, int, int]], fn: ChunkFn) -> list:
        """Applies fn to the given (slot, start, stop) chunks, on the pool where that pays."""
        parallel = self.threads > 1 and len(tasks) > 1 and all(t[0].param.device.type == "cpu" for t in tasks)
        if not parallel:
            ws = self._workspace()
            return [fn(slot, a, b, ws) for slot, a, b in tasks]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="zoo-sweep")
        return list(self._pool.map(lambda t: fn(t[0], t[1], t[2], self._workspace()), tasks))

    def scratch_bytes(self) -> int:
        """Bytes of scratch buffers held by all workers (the sweep's extra memory)."""
        with self._lock:
            return sum(ws.nbytes() for ws in self._workspaces)

    def __getstate__(self):
        raise TypeError("TorchBackend holds threads and is not picklable; save the optimizer's state_dict()")


class CpuBackend(TorchBackend):
    """The Philox stream drawn by the compiled C kernel (CPU parameters).

    Same chunking and threads as the torch backend; z is generated in
    registers, so MeZO's single-direction sweeps are one fused pass per
    element, and the stream equals the Triton backend's.
    """

    name = "cpu"
    stream_name = PhiloxStream.name

    def _make_stream(self):
        from .kernels import cpu

        if not cpu.available():
            raise ValueError(f"backend='cpu': the C kernel did not build here ({cpu.unavailable_reason()})")
        return PhiloxStream("cpu")


class TritonBackend(TorchBackend):
    """The Philox stream drawn by Triton kernels (GPU parameters; CPU under TRITON_INTERPRET=1).

    Every sweep, including n-SPSA's several directions and weight decay, is
    one kernel: one read and one write per element, no parameter-sized temporary.
    """

    name = "triton"
    stream_name = PhiloxStream.name

    def __init__(self, chunk_size: int = 1 << 24, threads: int | None = None):
        # GPU work is one launch per chunk: large chunks, no host threads.
        super().__init__(chunk_size=chunk_size, threads=1)

    def _make_stream(self):
        from .kernels import triton_ops

        try:
            import triton  # noqa: F401
        except ImportError as exc:
            raise ValueError("backend='triton' needs the triton package (pip install triton)") from exc
        return PhiloxStream("triton")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


BACKENDS = {"torch": TorchBackend, "cpu": CpuBackend, "triton": TritonBackend}


def resolve_backend(spec: str, device: torch.device | None) -> str:
    """The backend `auto` means on `device`: the fastest whose kernel works there.

    The environment variable ZOO_BACKEND, when set, is what `auto` means
    (how the test suite runs every estimator on every backend).
    """
    if spec != "auto":
        return spec
    forced = os.environ.get("ZOO_BACKEND")
    if forced:
        return forced
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        from .kernels import triton_ops

        return "triton" if triton_ops.available(device) else "torch"
    if device.type == "cpu":
        from .kernels import cpu

        return "cpu" if cpu.available() else "torch"
    return "torch"


def backend_for_stream(stream: str, device: torch.device | None) -> str:
    """The backend that draws `stream` on `device`, so that a saved run goes on with its own directions.

    `auto`'s pick where it draws `stream`, else the `torch` backend where that does
    (torch-generator works everywhere); philox needs the C kernel on the CPU or Triton
    on a GPU, and raises a ValueError where neither works.
    """
    known = sorted({b.stream_name for b in BACKENDS.values()})
    if stream not in known:
        raise ValueError(f"unknown noise stream {stream!r}: zoo draws {', '.join(map(repr, known))}")
    for name in (resolve_backend("auto", device), "torch"):
        if BACKENDS[name].stream_name == stream:
            return name
    raise ValueError(f"the run drew its directions from the {stream!r} stream, whose kernels do not work here "
                     "(the 'cpu' backend needs a C compiler, 'triton' a GPU with Triton installed)")


def make_backend(spec: "str | TorchBackend", device: torch.device | None = None, **kwargs) -> TorchBackend:
    """A backend from a name (`auto`, `torch`, `cpu`, `triton`) or an instance.

    Args:
        device: where the parameters live; it decides what `auto` picks.
    """
    if not isinstance(spec, str):
        return spec
    name = resolve_backend(spec, device)
    if name not in BACKENDS:
        raise ValueError(f"backend: unknown backend {spec!r}; choose one of {sorted(BACKENDS) + ['auto']}")
    if name == "triton" and device is not None:
        from .kernels import triton_ops

        # checked here, not at the first step's kernel launch ("0 active drivers")
        if not triton_ops.available(device):
            where = torch.device(device)
            why = ("the triton package is not installed (pip install triton)" if not _importable("triton") else
                   "Triton runs CPU tensors only under TRITON_INTERPRET=1" if where.type == "cpu" else
                   "no CUDA driver is available" if where.type == "cuda" else f"Triton has no {where.type} backend")
            raise ValueError(f"backend='triton' cannot run on {where} parameters here: {why}; "
                             "use backend='auto' (or 'cpu', the same philox stream on the CPU)")
    return BACKENDS[name](**{k: v for k, v in kwargs.items() if v is not None})
