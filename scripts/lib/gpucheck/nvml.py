"""The GPU's own utilisation, read through NVML (libnvidia-ml.so.1) with ctypes, so the bundle
carries no NVIDIA build dependency: where the library is absent, everything here says so and
the measurements go on without it.

Two readings per labelled interval (a phase or a step inside one):
- polled: a background thread calls nvmlDeviceGetUtilizationRates every `period` seconds
  (the driver answers with the % of its last sample period, 1/6 s to 1 s on most GPUs);
- driver samples: at the end of an interval, nvmlDeviceGetSamples(GPU_UTILIZATION) returns the
  driver's own time-stamped samples inside it, which do not depend on when we polled.
"""
import ctypes
import os
import statistics
import threading
import time

# Where the NVIDIA container runtime and distribution packages put the library; the bare
# soname comes first so LD_LIBRARY_PATH and ld.so.cache win.
LIBRARY_CANDIDATES = [
    "libnvidia-ml.so.1",
    "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
    "/usr/local/nvidia/lib/libnvidia-ml.so.1",
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
    "/usr/lib64/libnvidia-ml.so.1",
    "/usr/lib/libnvidia-ml.so.1",
]

NVML_SUCCESS = 0
NVML_GPU_UTILIZATION_SAMPLES = 1
# nvmlValueType_t: how to read nvmlValue_t.
VALUE_READERS = {0: "dval", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}


class Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class Value(ctypes.Union):
    _fields_ = [("dval", ctypes.c_double), ("uiVal", ctypes.c_uint), ("ulVal", ctypes.c_ulong),
                ("ullVal", ctypes.c_ulonglong), ("sllVal", ctypes.c_longlong), ("siVal", ctypes.c_int),
                ("usVal", ctypes.c_ushort)]


class Sample(ctypes.Structure):
    _fields_ = [("timeStamp", ctypes.c_ulonglong), ("sampleValue", Value)]


class NVMLError(Exception):
    pass


class NVML:
    """One device's handle; every method raises NVMLError with NVML's own message."""

    def __init__(self, index=0):
        self.lib, errors = None, []
        for candidate in LIBRARY_CANDIDATES:
            if candidate.startswith("/") and not os.path.exists(candidate):
                continue
            try:
                self.lib = ctypes.CDLL(candidate)
                self.path = candidate
                break
            except OSError as error:
                errors.append(str(error))
        if self.lib is None:
            raise NVMLError("libnvidia-ml.so.1 not found" + (f" ({errors[0]})" if errors else ""))
        self.lib.nvmlErrorString.restype = ctypes.c_char_p
        self._check(self.lib.nvmlInit_v2(), "nvmlInit_v2")
        self.handle = ctypes.c_void_p()
        self._check(self.lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(self.handle)),
                    "nvmlDeviceGetHandleByIndex_v2")
        self.lock = threading.Lock()  # NVML is thread-safe; this keeps shutdown from racing a poll

    def _check(self, status, what):
        if status != NVML_SUCCESS:
            message = self.lib.nvmlErrorString(status)
            raise NVMLError(f"{what}: {message.decode() if message else status}")

    def name(self):
        buffer = ctypes.create_string_buffer(96)
        self._check(self.lib.nvmlDeviceGetName(self.handle, buffer, ctypes.c_uint(len(buffer))), "nvmlDeviceGetName")
        return buffer.value.decode(errors="replace")

    def driver_version(self):
        buffer = ctypes.create_string_buffer(96)
        self._check(self.lib.nvmlSystemGetDriverVersion(buffer, ctypes.c_uint(len(buffer))), "nvmlSystemGetDriverVersion")
        return buffer.value.decode(errors="replace")

    def utilization(self):
        value = Utilization()
        with self.lock:
            self._check(self.lib.nvmlDeviceGetUtilizationRates(self.handle, ctypes.byref(value)),
                        "nvmlDeviceGetUtilizationRates")
        return value.gpu, value.memory

    def memory(self):
        value = Memory()
        with self.lock:
            self._check(self.lib.nvmlDeviceGetMemoryInfo(self.handle, ctypes.byref(value)), "nvmlDeviceGetMemoryInfo")
        return value.total, value.used

    def utilization_samples(self, since_us):
        """The driver's GPU-utilisation samples newer than `since_us` (µs since the epoch)."""
        value_type, count = ctypes.c_int(), ctypes.c_uint(0)
        with self.lock:
            self._check(self.lib.nvmlDeviceGetSamples(self.handle, NVML_GPU_UTILIZATION_SAMPLES, ctypes.c_ulonglong(since_us),
                                                      ctypes.byref(value_type), ctypes.byref(count), None),
                        "nvmlDeviceGetSamples")
            if count.value == 0:
                return []
            samples = (Sample * count.value)()
            self._check(self.lib.nvmlDeviceGetSamples(self.handle, NVML_GPU_UTILIZATION_SAMPLES, ctypes.c_ulonglong(since_us),
                                                      ctypes.byref(value_type), ctypes.byref(count), samples),
                        "nvmlDeviceGetSamples")
        field = VALUE_READERS.get(value_type.value, "uiVal")
        return [(s.timeStamp, float(getattr(s.sampleValue, field))) for s in samples[:count.value]]

    def shutdown(self):
        with self.lock:
            self.lib.nvmlShutdown()


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "max": max(values), "samples": len(values)}


class UtilisationSampler(threading.Thread):
    """Polls NVML every `period` s and files each reading under the label active at the time.
    Without NVML it only keeps the labels' wall-clock intervals, so reports still say what ran."""

    def __init__(self, nvml, period=0.04):
        super().__init__(name="nvml-sampler", daemon=True)
        self.nvml, self.period = nvml, period
        self.stack = []             # labels in force, innermost last (a phase, then a step in it)
        self.readings = []          # (innermost label, gpu %, memory %, memory used bytes)
        self.intervals = {}         # label -> [(start µs since epoch, end µs)]
        self.driver_samples = {}    # label -> [gpu %]
        self.errors = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            label = self.stack[-1] if self.stack else None
            if label is not None and self.nvml is not None:
                try:
                    gpu, memory = self.nvml.utilization()
                    _, used = self.nvml.memory()
                    self.readings.append((label, gpu, memory, used))
                except NVMLError as error:
                    if len(self.errors) < 5:
                        self.errors.append(str(error))
            self.stopping.wait(self.period)

    def begin(self, label):
        self.intervals.setdefault(label, []).append([int(time.time() * 1e6), None])
        self.stack = self.stack + [label]   # a new list: the polling thread reads it unlocked

    def end(self):
        if not self.stack:
            return
        label = self.stack[-1]
        self.stack = self.stack[:-1]
        interval = self.intervals[label][-1]
        interval[1] = int(time.time() * 1e6)
        if self.nvml is None:
            return
        try:
            inside = [v for t, v in self.nvml.utilization_samples(interval[0]) if interval[0] <= t <= interval[1]]
            self.driver_samples.setdefault(label, []).extend(inside)
        except NVMLError as error:
            if len(self.errors) < 5:
                self.errors.append(str(error))

    def label(self, name):
        sampler = self

        class Scope:
            def __enter__(self):
                sampler.begin(name)

            def __exit__(self, *exc):
                sampler.end()
                return False
        return Scope()

    def stop(self):
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=2)

    def report(self, prefix):
        """Polled and driver-sampled utilisation of every label starting with `prefix`."""
        def matches(label):
            return label == prefix or label.startswith(prefix + "/")
        readings = [r for r in self.readings if matches(r[0])]
        # A phase's own interval covers its steps': count the widest label that was recorded.
        widest = [prefix] if prefix in self.intervals else [label for label in self.intervals if matches(label)]
        driver = [v for label in widest for v in self.driver_samples.get(label, [])]
        seconds = sum((end - start) / 1e6 for label in widest for start, end in self.intervals[label] if end is not None)
        used = [r[3] for r in readings]
        return {"seconds": seconds,
                "gpu_util_pct": summary([r[1] for r in readings]),
                "memory_util_pct": summary([r[2] for r in readings]),
                "memory_used_max_mib": max(used) / 2**20 if used else None,
                "driver_gpu_util_pct": summary(driver)}

    def labels(self):
        return list(self.intervals)
