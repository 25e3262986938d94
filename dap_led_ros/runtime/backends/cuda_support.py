"""CUDA device identity, a stream, pinned host and device buffers for the TensorRT runtime.

Three interchangeable providers: pycuda, cuda-python (`pip install cuda-python`: JetPack ships
neither it nor pycuda), torch CUDA tensors. `open_cuda_memory("auto")` takes the first one that
imports and finds the device. `cuda_device_count` finds GPUs without torch.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dap_led_ros.runtime.backends.base import BackendError

PROVIDERS = ("pycuda", "cuda-python", "torch")  # torch last: a CPU build (Ubuntu's python3-torch) has no CUDA
log = logging.getLogger(__name__)


def _count_cuda_python() -> int:
    from cuda.bindings import driver  # cuda-python >= 12.6; the driver API needs no CUDA runtime

    (err,) = driver.cuInit(0)
    if int(err) != 0:
        return 0
    err, count = driver.cuDeviceGetCount()
    return int(count) if int(err) == 0 else 0


def _count_pycuda() -> int:
    import pycuda.driver as cuda

    cuda.init()
    return int(cuda.Device.count())


def _count_nvidia_smi() -> int:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise FileNotFoundError("nvidia-smi is not on PATH")
    out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines()) if out.returncode == 0 else 0


def _count_torch() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# Probes in order: the CUDA driver through cuda-python or pycuda, then nvidia-smi (Jetsons have
# none), then torch last (Ubuntu's python3-torch is a CPU build that would say "no GPU").
DEVICE_PROBES = (("cuda-python", _count_cuda_python), ("pycuda", _count_pycuda),
                 ("nvidia-smi", _count_nvidia_smi), ("torch", _count_torch))


def cuda_device_count() -> int:
    """The number of CUDA devices the first working probe reports (0: none, or no probe works)."""
    for name, probe in DEVICE_PROBES:
        try:
            count = probe()
        except Exception as exc:  # noqa: BLE001 - missing module, library or driver: next probe
            log.debug("CUDA probe %s unavailable: %s", name, exc)
            continue
        log.debug("CUDA probe %s: %d device(s)", name, count)
        return count
    return 0


def device_index(device: str) -> int:
    """'cuda' -> 0, 'cuda:1' -> 1; anything else is an error."""
    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise BackendError(f"expected a CUDA device ('cuda' or 'cuda:N'), got {device!r}")


@dataclass
class HostBuffer:
    """Page-locked host memory; `view` gives a numpy array over its first bytes."""

    data: np.ndarray  # flat uint8
    owner: Any = None  # keeps the allocation alive

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.data[:n].view(dtype).reshape(shape)


@dataclass
class DeviceBuffer:
    ptr: int
    nbytes: int
    owner: Any = None


class CudaMemory(ABC):
    """One device, one stream, and async copies on that stream."""

    name = "?"

    @property
    @abstractmethod
    def stream_handle(self) -> int:
        """The raw cudaStream_t for `execute_async_v3`."""

    @abstractmethod
    def host(self, nbytes: int) -> HostBuffer: ...

    @abstractmethod
    def device(self, nbytes: int) -> DeviceBuffer: ...

    @abstractmethod
    def copy_to_device(self, dst: DeviceBuffer, src: HostBuffer, nbytes: int) -> None: ...

    @abstractmethod
    def copy_to_host(self, dst: HostBuffer, src: DeviceBuffer, nbytes: int) -> None: ...

    @abstractmethod
    def synchronize(self) -> None: ...

    @abstractmethod
    def identity(self) -> tuple[str, str]:
        """(GPU name, compute capability 'major.minor')."""

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Make the device current on the calling thread (ROS executors call from several)."""
        yield

    def close(self) -> None:
        """Release the stream and context."""


class PycudaMemory(CudaMemory):
    name = "pycuda"

    def __init__(self, index: int) -> None:
        import pycuda.driver as cuda

        self._cuda = cuda
        cuda.init()
        if index >= cuda.Device.count():
            raise BackendError(f"no CUDA device {index} (pycuda sees {cuda.Device.count()})")
        self._dev = cuda.Device(index)
        self._ctx = self._dev.retain_primary_context()
        with self.activate():
            self._stream = cuda.Stream()

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    @property
    def stream_handle(self) -> int:
        return int(self._stream.handle)

    def host(self, nbytes: int) -> HostBuffer:
        return HostBuffer(self._cuda.pagelocked_empty(nbytes, np.uint8))

    def device(self, nbytes: int) -> DeviceBuffer:
        alloc = self._cuda.mem_alloc(nbytes)
        return DeviceBuffer(int(alloc), nbytes, alloc)

    def copy_to_device(self, dst: DeviceBuffer, src: HostBuffer, nbytes: int) -> None:
        self._cuda.memcpy_htod_async(dst.ptr, src.data[:nbytes], self._stream)

    def copy_to_host(self, dst: HostBuffer, src: DeviceBuffer, nbytes: int) -> None:
        self._cuda.memcpy_dtoh_async(dst.data[:nbytes], src.ptr, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def identity(self) -> tuple[str, str]:
        major, minor = self._dev.compute_capability()
        return str(self._dev.name()), f"{major}.{minor}"

    def close(self) -> None:
        self._stream = None
        self._ctx.detach()


class TorchMemory(CudaMemory):
    name = "torch"

    def __init__(self, index: int) -> None:
        import torch

        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise BackendError(f"torch sees no CUDA device {index}")
        self._torch = torch
        self._device = torch.device("cuda", index)
        self._stream = torch.cuda.Stream(device=self._device)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        with self._torch.cuda.device(self._device), self._torch.cuda.stream(self._stream):
            yield

    @property
    def stream_handle(self) -> int:
        return int(self._stream.cuda_stream)

    def host(self, nbytes: int) -> HostBuffer:
        t = self._torch.empty(nbytes, dtype=self._torch.uint8, pin_memory=True)
        return HostBuffer(t.numpy(), t)

    def device(self, nbytes: int) -> DeviceBuffer:
        t = self._torch.empty(nbytes, dtype=self._torch.uint8, device=self._device)
        return DeviceBuffer(int(t.data_ptr()), nbytes, t)

    def copy_to_device(self, dst: DeviceBuffer, src: HostBuffer, nbytes: int) -> None:
        with self._torch.cuda.stream(self._stream):
            dst.owner[:nbytes].copy_(src.owner[:nbytes], non_blocking=True)

    def copy_to_host(self, dst: HostBuffer, src: DeviceBuffer, nbytes: int) -> None:
        with self._torch.cuda.stream(self._stream):
            dst.owner[:nbytes].copy_(src.owner[:nbytes], non_blocking=True)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def identity(self) -> tuple[str, str]:
        major, minor = self._torch.cuda.get_device_capability(self._device)
        return self._torch.cuda.get_device_name(self._device), f"{major}.{minor}"


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


class CudaPythonMemory(CudaMemory):
    name = "cuda-python"

    def __init__(self, index: int) -> None:
        self._rt = _import_cudart()
        self._index = index
        count = self._check(self._rt.cudaGetDeviceCount())
        if index >= count:
            raise BackendError(f"no CUDA device {index} (cuda-python sees {count})")
        self._check(self._rt.cudaSetDevice(index))
        self._stream = self._check(self._rt.cudaStreamCreate())

    def _check(self, result: tuple) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _, msg = self._rt.cudaGetErrorString(err)
            raise BackendError(f"CUDA error {int(err)}: {msg.decode() if isinstance(msg, bytes) else msg}")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        self._check(self._rt.cudaSetDevice(self._index))
        yield

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def host(self, nbytes: int) -> HostBuffer:
        ptr = int(self._check(self._rt.cudaMallocHost(nbytes)))
        data = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return HostBuffer(data, _Freer(self._rt.cudaFreeHost, ptr))

    def device(self, nbytes: int) -> DeviceBuffer:
        ptr = int(self._check(self._rt.cudaMalloc(nbytes)))
        return DeviceBuffer(ptr, nbytes, _Freer(self._rt.cudaFree, ptr))

    def copy_to_device(self, dst: DeviceBuffer, src: HostBuffer, nbytes: int) -> None:
        self._check(self._rt.cudaMemcpyAsync(dst.ptr, src.data.ctypes.data, nbytes,
                                             self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))

    def copy_to_host(self, dst: HostBuffer, src: DeviceBuffer, nbytes: int) -> None:
        self._check(self._rt.cudaMemcpyAsync(dst.data.ctypes.data, src.ptr, nbytes,
                                             self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))

    def synchronize(self) -> None:
        self._check(self._rt.cudaStreamSynchronize(self._stream))

    def identity(self) -> tuple[str, str]:
        props = self._check(self._rt.cudaGetDeviceProperties(self._index))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00"), f"{props.major}.{props.minor}"

    def close(self) -> None:
        if self._stream is not None:
            self._rt.cudaStreamDestroy(self._stream)
            self._stream = None


class _Freer:
    """Frees a cuda-python allocation when the last buffer referencing it goes away."""

    def __init__(self, free: Any, ptr: int) -> None:
        self._free, self._ptr = free, ptr

    def __del__(self) -> None:
        try:
            self._free(self._ptr)
        except Exception:  # interpreter shutdown: nothing left to free into
            pass


_CLASSES: dict[str, type[CudaMemory]] = {"pycuda": PycudaMemory, "torch": TorchMemory,
                                         "cuda-python": CudaPythonMemory}


def open_cuda_memory(device: str, provider: str = "auto") -> CudaMemory:
    """The named provider, or with "auto" the first of pycuda, cuda-python, torch that works."""
    index = device_index(device)
    names = PROVIDERS if provider == "auto" else (provider,)
    if provider != "auto" and provider not in _CLASSES:
        raise BackendError(f"unknown CUDA memory provider {provider!r}; choose from auto, {', '.join(PROVIDERS)}")
    errors = []
    for name in names:
        try:
            return _CLASSES[name](index)
        except ImportError as exc:
            errors.append(f"{name}: not installed ({exc})")
        except BackendError as exc:
            errors.append(f"{name}: {exc}")
        except Exception as exc:  # driver-level failures of any of the three libraries
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    raise BackendError("no usable CUDA buffer provider: " + "; ".join(errors))
