#!/usr/bin/env python3
"""gpu-check's runner: measures malvvm on the GPU of a host where nothing of ours is installed,
from the bundle `scripts/gpu-check` builds (binaries, their libraries, the guest, the dataset,
the direct-Vulkan harness and its SPIR-V). Python stdlib only; torch is used when present.

Phases, each bounded in time and skipped with a one-line reason when something it needs is
missing, in under 4 minutes on a 16-core host:
  1 discovery   host, driver, `malvvm gpus`, NVML (the GPU's own utilisation, sampled in every phase)
  2 training    the digits job natively vs in a VM on the para-vGPU and on the full-vGPU, rounds
                alternating; VM/native ratio and the VM's cost per submission by stage (--metrics)
  3 microbench  test=vgpubench and test=fullvgpubench (µs per submission by batch size)
  4 sharing     test=vgpuload: 1 VM alone, then 4 at once, on one `malvvm gpud` (equal share)
  5 kernels     each benchmark kernel through GPUHost vs the same SPIR-V through vkdirect
  6 gemm        GPUHost's sgemm vs PyTorch fp32 matmul (cuBLAS, TF32 off)
Prints one table (phase, measurement, value, goal) and writes OUT/gpu-check-<device>.json.

Usage (from the bundle): run --out DIR [--quick] [--gpu SEL] [--rounds N] [--epochs N] ...
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# In the bundle benchlib.py sits beside this file; in the source tree, one folder up.
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from benchlib import api, parse_train  # noqa: E402
import nvml  # noqa: E402
import plans  # noqa: E402

NVIDIA_ICD = "/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json"
NVIDIA_LIBRARY_DIRS = ["/usr/local/nvidia/lib64", "/usr/local/nvidia/lib"]
NVIDIA_EGL_VENDOR = "/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json"
# Tried in this order until malvvm starts and the Vulkan driver loads: the host's own C++
# runtime, X11 and GL dispatch libraries win wherever it has them (lib-base: libstdc++/libgcc_s/libz;
# lib-icd: what NVIDIA's Vulkan ICD links and minimal containers lack).
OPTIONAL_LIBRARY_SETS = [[], ["lib-base"], ["lib-icd"], ["lib-base", "lib-icd"]]
PHASES = ["discovery", "training", "microbench", "sharing", "kernels", "gemm"]
RAW_LIMIT = 4000

# `malvvm bench native` prints its own NVML summary (GPUHost's NVMLRun) when the driver is there.
NVML_LINE = re.compile(r"^nvml: .* busy mean ([0-9.]+) %, peak ([0-9.]+) %")
BENCH_ROW = re.compile(r"^(\w+): batch +(\d+): sync +([0-9.]+) us/submission +([0-9.]+) us/command \((\d+)\), "
                       r"qd(\d+) +([0-9.]+) us/submission +([0-9.]+) us/command \((\d+)\)")


def log(message):
    print(f"gpu-check: {message}", file=sys.stderr, flush=True)


def trim(text, limit=RAW_LIMIT):
    text = text if isinstance(text, str) else text.decode(errors="replace")
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def last_line(text):
    """The last non-empty line: where a tool puts its error."""
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return lines[-1].strip()[:300] if lines else ""


class Skip(Exception):
    """A phase cannot run here; the message is the one-line reason."""


class Budget:
    def __init__(self, seconds):
        self.start, self.seconds = time.monotonic(), seconds

    def elapsed(self):
        return time.monotonic() - self.start

    def left(self):
        return self.seconds - self.elapsed()


class Result:
    def __init__(self, rc, out, err, wall, timed_out):
        self.rc, self.out, self.err, self.wall, self.timed_out = rc, out, err, wall, timed_out

    def why(self):
        return "timed out" if self.timed_out else f"exit {self.rc}: {last_line(self.err) or last_line(self.out)}"


class Check:
    """Paths, environment and process handling shared by the phases."""

    def __init__(self, args):
        self.args = args
        self.bundle = args.bundle
        self.bin = lambda name: os.path.join(self.bundle, "bin", name)
        self.kernel = os.path.join(self.bundle, "guest", "malvguest.elf")
        self.dataset = os.path.join(self.bundle, "guest", "digits.img")
        self.work = tempfile.mkdtemp(prefix="gpu-check-")
        self.budget = Budget(args.budget)
        self.base_env = dict(os.environ)
        self.env = None
        self.nvml_info = {}
        self.children = []          # every process started, so an interrupted run stops them all
        self.host = {}
        self.failures = []
        self.table = []
        try:
            with open(os.path.join(self.bundle, "MANIFEST.json")) as f:
                self.manifest = json.load(f)
        except (OSError, ValueError):
            self.manifest = {}

    # --- processes ---

    def timeout(self, wanted):
        """A command's limit: what it may need, never past the whole run's budget."""
        return max(5.0, min(wanted, self.budget.left() + 10))

    def run(self, cmd, timeout, env=None):
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=self.work, env=env or self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        self.children.append(proc)
        try:
            out, err = proc.communicate(timeout=self.timeout(timeout))
            timed_out = False
        except subprocess.TimeoutExpired:
            self.kill(proc)
            out, err = proc.communicate()
            timed_out = True
        return Result(proc.returncode, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace"),
                      time.monotonic() - start, timed_out)

    def start(self, cmd, stdout, stderr=subprocess.STDOUT):
        proc = subprocess.Popen(cmd, cwd=self.work, env=self.env, stdout=stdout, stderr=stderr, start_new_session=True)
        self.children.append(proc)
        return proc

    def stop_children(self):
        for proc in self.children:
            if proc.poll() is None:
                self.kill(proc)
                proc.wait()

    @staticmethod
    def kill(proc, sig=signal.SIGKILL):
        # Each child leads its own session: the signal reaches it and nothing of ours.
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    # --- environment ---

    def prepare_environment(self):
        """LD_LIBRARY_PATH and the Vulkan ICD for our binaries; proves malvvm starts."""
        required = self.manifest.get("glibc_required")
        host_glibc = (os.confstr("CS_GNU_LIBC_VERSION") or "glibc ?").split()[-1]
        self.host["glibc"] = host_glibc
        if required and _version(host_glibc) < _version(required):
            sys.exit(f"gpu-check: this host's glibc {host_glibc} is older than the {required} the bundle needs")
        icd = self.args.icd or (NVIDIA_ICD if os.path.exists(NVIDIA_ICD) else None)
        inherited = [d for d in self.base_env.get("LD_LIBRARY_PATH", "").split(":") if d]
        # The NVIDIA runtime's libraries (the ICD's libGLX_nvidia, libnvidia-ml) live here on
        # hosts that mount the driver; the container usually, not always, names them already.
        host_dirs = inherited + [d for d in NVIDIA_LIBRARY_DIRS if os.path.isdir(d) and d not in inherited]
        icd_library = _icd_library(icd) if icd else None
        attempts = []
        for extra in OPTIONAL_LIBRARY_SETS:
            dirs = [os.path.join(self.bundle, d) for d in ["lib"] + extra] + host_dirs
            if icd == NVIDIA_ICD and "lib-icd" not in extra:
                # Last, so the host's own GLVND wins where it has one: NVIDIA's Vulkan driver
                # needs GLVND's EGL on a headless host, which minimal containers lack (then
                # vkCreateInstance finds "no drivers" although the ICD loads).
                dirs.append(os.path.join(self.bundle, "lib-icd"))
            env = dict(self.base_env, LD_LIBRARY_PATH=":".join(dirs))
            if icd:
                env["VK_ICD_FILENAMES"] = env["VK_DRIVER_FILES"] = icd
            if icd == NVIDIA_ICD and os.path.exists(NVIDIA_EGL_VENDOR):
                env["__EGL_VENDOR_LIBRARY_FILENAMES"] = NVIDIA_EGL_VENDOR
            problem = self._probe(env, icd_library)
            attempts.append({"extra": extra, "problem": problem})
            if problem is None:
                break
        self.env = env
        self.host.update({"ld_library_path": env["LD_LIBRARY_PATH"], "vulkan_icd": icd or "loader default",
                          "icd_library": icd_library, "library_probes": attempts})
        if attempts[-1]["problem"] is not None:
            problem = attempts[-1]["problem"]
            if problem.startswith("malvvm"):
                sys.exit(f"gpu-check: {problem}")
            log(f"warning: {problem}; Vulkan phases will likely fail")

    def _probe(self, env, icd_library):
        r = self.run([self.bin("malvvm"), "--help"], 20, env=env)
        if r.rc != 0:
            return f"malvvm does not start here: {last_line(r.err) or r.why()}"
        if icd_library:
            r = self.run([sys.executable, "-c", "import ctypes, sys; ctypes.CDLL(sys.argv[1])", icd_library], 20, env=env)
            if r.rc != 0:
                return f"the Vulkan ICD library {icd_library} does not load: {last_line(r.err)}"
            # Loading is not enough: the driver must also create an instance and list the GPU.
            r = self.run([self.bin("malvvm"), "gpus"], 30, env=env)
            if "no Vulkan devices" in r.out or r.rc != 0:
                line = next((l for l in r.out.splitlines() if l.startswith("Vulkan:")), last_line(r.err))
                return f"the Vulkan driver lists no GPU: {line}"
        return None

    # --- reporting ---

    def row(self, phase, measurement, value, goal=""):
        self.table.append([phase, measurement, value, goal])

    def ordered_table(self):
        """Rows grouped by phase (cross-phase rows are added last), in the order they came."""
        order = {p: i for i, p in enumerate(PHASES)}
        return sorted(self.table, key=lambda r: order.get(r[0], len(PHASES)))


def _version(text):
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _icd_library(icd_json):
    try:
        with open(icd_json) as f:
            path = json.load(f)["ICD"]["library_path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # A path with a slash is relative to the manifest; a bare name goes through the loader's search.
    if "/" in path and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(icd_json), path)
    return path


def fmt(value, spec=".3f", unit=""):
    if value is None:
        return "-"
    return f"{format(value, spec)}{unit}"


def verdict(value, goal, better):
    """`meets`/`misses` for a number against its goal; better is 'low' or 'high'."""
    if value is None:
        return ""
    ok = value <= goal if better == "low" else value >= goal
    return " (meets)" if ok else " (misses)"


# ----------------------------------------------------------------------------------------------
# Phase 1: discovery


def nvidia_smi_fields(text):
    """The header of `nvidia-smi -q` and the first GPU's own fields; of its subsections only
    virtualisation (is this host itself a passthrough VM?) and MIG mode (a slice, not the GPU?)."""
    header, gpu, section, in_gpu = {}, {}, None, False
    for line in text.splitlines():
        if not line.strip() or line.startswith("="):
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0 and (m := re.match(r"GPU ([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+\.[0-9A-Fa-f]+)\s*$", line)):
            if in_gpu:
                break  # the first GPU is the one measured
            in_gpu, gpu["Bus Id"] = True, m[1]
            continue
        key, _, value = line.strip().partition(":")
        key, value = key.strip(), value.strip()
        if indent == 0:
            header[key] = value
        elif in_gpu and indent == 4:
            section = key if not value else None
            if value:
                gpu[key] = value
        elif in_gpu and indent == 8 and section and ("Virtualization" in section or section == "MIG Mode") and value:
            gpu[f"{section} / {key}"] = value
    return header, gpu


def first_gpu_name(table):
    """The NAME of the first row of `malvvm gpus` (columns are two or more spaces apart)."""
    lines = [l for l in table.splitlines() if l.strip()]
    if len(lines) < 3 or "NAME" not in lines[0]:
        return None
    header, row = re.split(r"\s{2,}", lines[0].strip()), re.split(r"\s{2,}", lines[2].strip())
    name = row[header.index("NAME")] if len(row) == len(header) else None
    return name if name and name != "-" else None


def phase_discovery(check, sampler, results):
    nvml_info = check.nvml_info
    result = {"nvml": nvml_info}
    smi = shutil.which("nvidia-smi", path=check.base_env.get("PATH", "") + ":/usr/local/nvidia/bin:/usr/bin")
    if smi:
        r = check.run([smi, "-q"], 30, env=check.base_env)
        header, gpu = nvidia_smi_fields(r.out)
        result["nvidia_smi"] = {"path": smi, "exit": r.rc, "header": header, "gpu": gpu, "raw": trim(r.out, 3000)}
        check.row("discovery", "driver (nvidia-smi)", header.get("Driver Version", "-"))
        mode = next((v for k, v in gpu.items() if "Virtualization Mode" in k), None)
        if mode:
            check.row("discovery", "GPU virtualisation mode", mode)
    else:
        result["nvidia_smi"] = {"skipped": "nvidia-smi not found"}
    r = check.run([check.bin("malvvm"), "gpus"], 60)
    result["malvvm_gpus"] = {"exit": r.rc, "output": trim(r.out), "stderr": trim(r.err, 1000)}
    result["vulkan_device"] = first_gpu_name(r.out)
    if r.rc != 0:
        check.failures.append(f"malvvm gpus: {r.why()}")
    check.row("discovery", "malvvm gpus", "ok" if r.rc == 0 else r.why())
    if nvml_info.get("available"):
        check.row("discovery", "NVML", f"{nvml_info['name']}, driver {nvml_info['driver']}, "
                                       f"{nvml_info['memory_total_mib']:.0f} MiB")
    else:
        check.row("discovery", "NVML", f"not available ({nvml_info.get('reason', '?').split(' (')[0]})")
    check.row("discovery", "Vulkan ICD", check.host["vulkan_icd"])
    return result


# ----------------------------------------------------------------------------------------------
# Phase 2: training, VM vs native


def vm_args(check, spec, cmdline, metrics):
    return [check.bin("malvvm"), "run", "--kernel", check.kernel, "--memory", "512M", "--disk", f"{check.dataset},readonly",
            "--vgpu", spec, "--gpu", check.args.gpu, "--api-socket", "none", "--metrics", metrics, "--cmdline", cmdline]


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stage_costs(metrics, serial_bytes):
    """Per submission, µs, from the VM's --metrics: each stage of the para/full-vGPU path,
    and what end-to-end time no stage accounts for (hand-offs between threads, fences)."""
    vgpus = (metrics or {}).get("vgpus") or []
    stats = (vgpus[0] if vgpus else {}).get("statistics") or {}
    n = stats.get("submissions") or 0
    if not n:
        return None
    stages = {k: stats.get(f"{k}_nanoseconds", 0) / n / 1000 for k in ("decode", "upload", "download", "queueing", "submit", "gpu", "end_to_end")}
    stages["unattributed"] = stages["end_to_end"] - sum(stages[k] for k in ("decode", "upload", "download", "queueing", "submit", "gpu"))
    out = {"submissions": n, "commands": stats.get("commands"), "upload_bytes": stats.get("upload_bytes"),
           "download_bytes": stats.get("download_bytes"), "us_per_submission": stages}
    kvm_exits = (metrics.get("kvm") or {}).get("exits")
    vmm = metrics.get("vmm") or {}
    # Every console byte is one port-I/O exit: not the vGPU's.
    out["kvm_exits_per_submission"] = (kvm_exits - serial_bytes) / n if kvm_exits is not None else None
    out["vmm_exits_per_submission"] = (vmm.get("port_io_exits", 0) + vmm.get("mmio_exits", 0) - serial_bytes) / n
    out["scheduler"] = metrics.get("scheduler")
    out["statistics"] = stats
    if vgpus and vgpus[0].get("gvm"):
        out["gvm"] = vgpus[0]["gvm"]
    # malvvm's own NVML sampling over the VM's run (--metrics), where the driver is there.
    nvml_report = metrics.get("nvml") or {}
    out["nvml"] = nvml_report or None
    devices = nvml_report.get("devices") or []
    out["nvml_busy_mean_pct"] = devices[0].get("mean_gpu_utilisation_percent") if devices else None
    return out


def training_run(check, side, epochs):
    extra = "" if epochs == 20 else f" epochs={epochs}"
    if side == "native":
        cmd = [check.bin("malvvm"), "bench", "native", "--gpu", check.args.gpu, "--dataset", check.dataset, "--epochs", str(epochs)]
        metrics_path = None
    else:
        metrics_path = os.path.join(check.work, f"train-{side}-{time.monotonic_ns()}.json")
        spec, cmdline = ("profile=4g.4gb", "test=train") if side == "para" else ("kind=full,profile=4g.4gb", "test=train gpu=full")
        cmd = vm_args(check, spec, cmdline + extra, metrics_path)
    r = check.run(cmd, check.args.run_timeout)
    result = parse_train(r.out)
    result.update(exit=r.rc, wall_s=r.wall, passed=r.rc == 0 and result["final_test_acc"] is not None)
    # Everything but the per-epoch lines: summaries, and whatever a newer malvvm adds.
    result["report_lines"] = [l.rstrip("\r") for l in r.out.splitlines() if l.strip() and " epoch " not in l][-16:]
    nvml_line = next((m for m in map(NVML_LINE.match, result["report_lines"]) if m), None)
    result["nvml_busy_mean_pct"] = float(nvml_line[1]) if nvml_line else None
    if r.rc != 0:
        result["error"] = r.why()
        result["raw"] = trim(r.out, 1500)
    if metrics_path:
        result["costs"] = stage_costs(read_json(metrics_path), len(r.out.encode()))
        result["nvml_busy_mean_pct"] = (result["costs"] or {}).get("nvml_busy_mean_pct")
    del result["epochs"][3:-1]  # the first three epochs and the last are enough for the record
    return result


def phase_training(check, sampler, results):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise Skip("/dev/kvm is missing or not read-writable")
    args, sides = check.args, ["native", "para", "full"]
    runs = {s: [] for s in sides}
    cap = check.args.budget * 0.40
    phase_start = time.monotonic()
    for w in range(args.warmup):
        log(f"  warm-up {w + 1}/{args.warmup}: native")
        with sampler.label("training/warmup"):
            training_run(check, "native", args.epochs)
    rounds_done = 0
    for i in range(args.rounds):
        round_start = time.monotonic()
        order = sides[i % 3:] + sides[:i % 3]  # rotate, so drifting host load favours no side
        for side in order:
            with sampler.label(f"training/{side}"):
                r = training_run(check, side, args.epochs)
            runs[side].append(r)
            log(f"  round {i + 1}/{args.rounds} {side}: {r['train_ms']} ms, test-acc {r['final_test_acc']}%"
                + ("" if r["exit"] == 0 else f", {r.get('error')}"))
        rounds_done += 1
        last = time.monotonic() - round_start
        if time.monotonic() - phase_start + last > cap or check.budget.left() < last + 60:
            if i + 1 < args.rounds:
                log(f"  stopping after {i + 1} rounds: time budget")
            break
    summary = {}
    for side in sides:
        ok = [r for r in runs[side] if r["passed"]]
        costs = [r["costs"] for r in ok if r.get("costs")]
        summary[side] = {
            "train_ms_median": median([r["train_ms"] for r in ok]),
            "train_ms": [r["train_ms"] for r in runs[side]],
            "job_ms_median": median([r["job_ms"] for r in ok]),
            "wall_s_median": median([r["wall_s"] for r in ok]),
            "final_test_acc": median([r["final_test_acc"] for r in ok]),
            "train_images_per_s": median([r["train_images_per_s"] for r in ok]),
            "scheduler_util_pct": median([r["gpu_utilisation_pct"] for r in ok]),
            "malvvm_nvml_busy_mean_pct": median([r["nvml_busy_mean_pct"] for r in ok]),
            "backend": next((r["backend"] for r in runs[side] if r.get("backend")), None),
            "passed": len(ok), "runs": len(runs[side]),
            "us_per_submission": {k: median([c["us_per_submission"][k] for c in costs]) for k in
                                  ("decode", "upload", "download", "queueing", "submit", "gpu", "end_to_end", "unattributed")} if costs else None,
            "kvm_exits_per_submission": median([c["kvm_exits_per_submission"] for c in costs]),
            "vmm_exits_per_submission": median([c["vmm_exits_per_submission"] for c in costs]),
            "submissions": median([c["submissions"] for c in costs]),
        }
    native = summary["native"]["train_ms_median"]
    result = {"epochs": args.epochs, "rounds": rounds_done, "summary": summary, "runs": runs}
    for side in ("para", "full"):
        result[f"{side}_over_native"] = ratio(summary[side]["train_ms_median"], native)
        result[f"{side}_over_native_per_round"] = [ratio(vm["train_ms"], host["train_ms"]) for vm, host in zip(runs[side], runs["native"])
                                                   if vm["passed"] and host["passed"]]
    check.row("training", f"digits job native, median of {rounds_done} ({args.epochs} epochs)", fmt(native and native / 1000, ".3f", " s"))
    for side, label in (("para", "para-vGPU"), ("full", "full-vGPU")):
        s, vm_over_native = summary[side], result[f"{side}_over_native"]
        check.row("training", f"{label} VM", fmt(s["train_ms_median"] and s["train_ms_median"] / 1000, ".3f", " s")
                  + f" ({s['passed']}/{s['runs']} passed, acc {fmt(s['final_test_acc'], '.2f')} %)")
        check.row("training", f"{label} VM / native", fmt(vm_over_native, ".3f") + verdict(vm_over_native, 1.02, "low"), "<= 1.02")
        costs = s["us_per_submission"]
        if costs:
            check.row("training", f"{label} µs/submission decode/upload/download/queue",
                      "/".join(fmt(costs[k], ".0f") for k in ("decode", "upload", "download", "queueing")))
            check.row("training", f"{label} µs/submission GPU/end-to-end/unattributed",
                      "/".join(fmt(costs[k], ".0f") for k in ("gpu", "end_to_end", "unattributed")))
    check.row("training", "native: scheduler busy / wall", fmt(summary["native"]["scheduler_util_pct"], ".1f", " %"))
    busy = [summary[side]["malvvm_nvml_busy_mean_pct"] for side in sides]
    if any(b is not None for b in busy):
        check.row("training", "GPU busy, malvvm's own NVML: native / para / full",
                  " / ".join(fmt(b, ".0f", " %") for b in busy) + verdict(busy[0], 80, "high"), ">= 80 % (native)")
    for side in sides:
        for run in runs[side]:
            if not run["passed"]:
                check.failures.append(f"training, {side}: {run.get('error', 'no final accuracy')}")
    return result


# ----------------------------------------------------------------------------------------------
# Phase 3: submission microbenchmarks


def parse_bench_rows(text):
    rows = {}
    for line in text.splitlines():
        if m := BENCH_ROW.match(line.rstrip("\r")):
            rows[int(m[2])] = {"sync_us_per_submission": float(m[3]), "sync_us_per_command": float(m[4]),
                               "sync_submissions": int(m[5]), "depth": int(m[6]), "qd_us_per_submission": float(m[7]),
                               "qd_us_per_command": float(m[8]), "qd_submissions": int(m[9])}
    return rows


def phase_microbench(check, sampler, results):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise Skip("/dev/kvm is missing or not read-writable")
    result = {"bench_ms": check.args.bench_ms}
    for test, spec, label in (("vgpubench", "profile=4g.4gb", "para-vGPU"), ("fullvgpubench", "kind=full,profile=4g.4gb", "full-vGPU")):
        metrics_path = os.path.join(check.work, f"{test}.json")
        cmd = [check.bin("malvvm"), "run", "--kernel", check.kernel, "--vgpu", spec, "--gpu", check.args.gpu,
               "--api-socket", "none", "--metrics", metrics_path, "--cmdline", f"test={test} bench_ms={check.args.bench_ms}"]
        log(f"  {test}")
        with sampler.label(f"microbench/{test}"):
            r = check.run(cmd, check.args.run_timeout)
        rows = parse_bench_rows(r.out)
        done = f"{test}: done" in r.out
        result[test] = {"exit": r.rc, "done": done, "rows": rows, "raw": trim(r.out),
                        "costs": stage_costs(read_json(metrics_path), len(r.out.encode()))}
        if r.rc != 0 or not done:
            check.failures.append(f"{test}: {r.why()}")
        one, many = rows.get(1, {}), rows.get(256, {})
        check.row("microbench", f"{label} 1-command submission, sync / qd{one.get('depth', 8)}",
                  f"{fmt(one.get('sync_us_per_submission'), '.1f')} / {fmt(one.get('qd_us_per_submission'), '.1f')} µs")
        per_command = many.get("sync_us_per_command")
        check.row("microbench", f"{label} 256-command submission, sync, per command",
                  fmt(per_command, ".2f", " µs") + verdict(per_command, 2.0, "low"), "<= 2 µs")
    # Host time to hand a repeated training epoch (675 kernels) to the device: recorded every
    # time against replaying one recording, as a para-vGPU's decode-cache hit does.
    log("  malvvm bench gpu replay")
    with sampler.label("microbench/replay"):
        r = check.run([check.bin("malvvm"), "bench", "gpu", "replay"], check.args.run_timeout)
    fields = next((line.split() for line in r.out.splitlines() if line.startswith("replay kernels ")), None)
    replay = {fields[i]: float(fields[i + 1]) for i in range(1, len(fields) - 1, 2) if fields[i + 1] != "-"} if fields else None
    result["replay"] = {"exit": r.rc, "values": replay, "raw": trim(r.out)}
    if r.rc != 0 or not replay:
        check.failures.append(f"bench gpu replay: {r.why()}")
    else:
        check.row("microbench", "epoch submit µs recorded / replayed (675 kernels)",
                  f"{fmt(replay.get('record_submit_us'), '.0f')} / {fmt(replay.get('replay_submit_us'), '.0f')}"
                  f" ({fmt(replay.get('submit_ratio'), '.1f')}x)")
    # A guest blob's way to VRAM and back: host memcpy through staging against device copies
    # straight out of imported guest pages (zero-copy).
    log("  malvvm bench gpu transfer")
    with sampler.label("microbench/transfer"):
        r = check.run([check.bin("malvvm"), "bench", "gpu", "transfer", "--sizes", "64,1024,16384", "--rounds", "10"],
                      check.args.run_timeout)
    transfers = []
    for line in r.out.splitlines():
        if line.startswith("transfer bytes "):
            fields = line.split()
            transfers.append({fields[i]: float(fields[i + 1]) for i in range(1, len(fields) - 1, 2) if fields[i + 1] != "-"})
    result["transfer"] = {"exit": r.rc, "values": transfers, "raw": trim(r.out)}
    if r.rc != 0 or not transfers:
        check.failures.append(f"bench gpu transfer: {r.why()}")
    else:
        for t in transfers:
            check.row("microbench", f"guest blob {int(t['bytes']) >> 10} KiB round trip µs staged / zero-copy",
                      f"{fmt(t.get('staged_wall_us'), '.0f')} / {fmt(t.get('zero_copy_wall_us'), '.0f')}"
                      f" ({fmt(t.get('wall_ratio'), '.2f')}x)")
    return result


# ----------------------------------------------------------------------------------------------
# Phase 4: sharing on one gpud


class Daemon:
    def __init__(self, check):
        self.check = check
        self.socket = os.path.join(check.work, "gpud.sock")
        self.log_path = os.path.join(check.work, "gpud.out")
        self.out = open(self.log_path, "w+")
        self.proc = check.start([check.bin("malvvm"), "gpud", "--gpu", check.args.gpu, "--policy", "equal-share",
                                 "--socket", self.socket], self.out)
        self.api_socket, self.device = self.socket + ".api", None
        deadline = time.monotonic() + check.timeout(60)
        while time.monotonic() < deadline:
            text = self.text()
            if m := re.search(r"gpud: serving (.*?) \(.*?API on (\S+)", text):
                self.device, self.api_socket = m[1], m[2]
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gpud did not start: {last_line(self.text())}")

    def text(self):
        self.out.seek(0)
        return self.out.read()

    def poll(self):
        """GET /status straight from the API socket: cheap enough to poll."""
        code, body = api(self.api_socket, "GET", "/status")
        if code != 200:
            raise RuntimeError(f"gpud status: HTTP {code}")
        return body

    def status(self):
        """`malvvm gpud status --json`, the operator's own view."""
        r = self.check.run([self.check.bin("malvvm"), "gpud", "status", "--socket", self.socket, "--json"], 30)
        if r.rc != 0:
            raise RuntimeError(f"gpud status: {r.why()}")
        return json.loads(r.out)

    def reset(self):
        code, _ = api(self.api_socket, "PUT", "/metrics/reset")
        if code >= 300:
            raise RuntimeError(f"gpud metrics reset: HTTP {code}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                Check.kill(self.proc)
                self.proc.wait()
        self.out.close()


def jain(values):
    values = [v for v in values if v]
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if values else None


def submissions_by_vm(status, prefix):
    return {v["vm"]: v["submissions"] for v in status.get("vgpus", []) if v["vm"].startswith(prefix)}


def load_vms(check, daemon, count, seconds):
    """`count` VMs keep their vGPUs busy (test=vgpuload); the rate is what the daemon completed
    for them in a window of `seconds` while every one of them was submitting, so boot times and
    stragglers running alone at the end do not count. The guests are told to run longer than
    needed and stopped after the window."""
    prefix = f"gpucheck-{count}-"
    procs = [check.start([check.bin("malvvm"), "run", "--kernel", check.kernel, "--name", f"{prefix}{i}",
                          "--api-socket", "none", "--vgpu", f"gpud={daemon.socket},profile=1g.1gb",
                          "--cmdline", f"test=vgpuload seconds={seconds + 120}"], subprocess.PIPE, subprocess.PIPE)
             for i in range(count)]
    result = {"vms": count, "window_s": None}
    try:
        deadline = time.monotonic() + check.timeout(90)
        while True:
            busy = submissions_by_vm(daemon.poll(), prefix)
            if len(busy) == count and all(n > 0 for n in busy.values()):
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"only {sum(1 for n in busy.values() if n > 0)} of {count} VMs started submitting")
            time.sleep(0.05)
        daemon.reset()
        before, t0 = submissions_by_vm(daemon.poll(), prefix), time.monotonic()
        time.sleep(seconds)
        after, t1 = submissions_by_vm(daemon.poll(), prefix), time.monotonic()
        status = daemon.status()
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a VM ended inside the measurement window")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        outputs = []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                Check.kill(proc)
                out, err = proc.communicate()
            outputs.append((proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")))
        for rc, out, err in outputs:
            if "vgpuload: FAIL" in out or not out.strip():
                check.failures.append(f"vgpuload in {count} VM(s): exit {rc}: {last_line(err) or last_line(out)}")
                result.setdefault("failed_vm_output", []).append(trim(out + err, 1500))
    window = t1 - t0
    rates = {vm: (after.get(vm, 0) - before.get(vm, 0)) / window for vm in sorted(before)}
    keep = ("utilisation", "jain_index", "max_share_error", "queueing_p99_milliseconds", "window_seconds", "policy",
            "time_slice_milliseconds", "gpu", "dispatch_busy", "retire_busy", "nvml")
    result.update(window_s=window, submissions_per_s=rates, total_submissions_per_s=sum(rates.values()),
                  jain_vm_rates=jain(list(rates.values())),
                  gpud={k: status.get(k) for k in keep} | {"vgpus": [
                      {k: v.get(k) for k in ("vm", "submissions", "gpu_milliseconds", "measured_share", "target_share")}
                      for v in status.get("vgpus", []) if v["vm"].startswith(prefix)]})
    return result


def phase_sharing(check, sampler, results):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise Skip("/dev/kvm is missing or not read-writable")
    seconds = check.args.load_seconds
    if check.budget.left() < 2 * seconds + 30:
        raise Skip("not enough of the time budget left")
    daemon = Daemon(check)
    result = {"policy": "equal-share", "window_seconds": seconds, "gpud_device": daemon.device}
    try:
        for count in (1, 4):
            log(f"  {count} VM{'s' if count > 1 else ''} running test=vgpuload, {seconds} s measured")
            with sampler.label(f"sharing/{count}vm"):
                result[f"{count}vm"] = load_vms(check, daemon, count, seconds)
    finally:
        daemon.stop()
    one, four = result["1vm"]["total_submissions_per_s"], result["4vm"]["total_submissions_per_s"]
    result["four_over_one"] = ratio(four, one)
    rates = list(result["4vm"]["submissions_per_s"].values())
    check.row("sharing", "1 VM alone, submissions/s", fmt(one, ".0f"))
    check.row("sharing", "4 VMs, submissions/s total (each)",
              f"{fmt(four, '.0f')} ({', '.join(fmt(r, '.0f') for r in rates)})")
    check.row("sharing", "4 VMs / 1 VM", fmt(result["four_over_one"], ".2f", "×") + verdict(result["four_over_one"], 3.1, "high"),
              ">= 3.1× (stretch 3.7×)")
    gpud_jain = result["4vm"]["gpud"].get("jain_index")
    check.row("sharing", "Jain index, 4 VMs (gpud GPU time / submissions)",
              f"{fmt(gpud_jain, '.4f')} / {fmt(result['4vm']['jain_vm_rates'], '.4f')}" + verdict(gpud_jain, 0.99, "high"), ">= 0.99")
    check.row("sharing", "gpud utilisation, 1 VM / 4 VMs",
              f"{fmt(result['1vm']['gpud'].get('utilisation'), '.3f')} / {fmt(result['4vm']['gpud'].get('utilisation'), '.3f')}")
    # Where the host's time goes: a scheduler thread near 100 % busy is what bounds the rate.
    check.row("sharing", "gpud dispatching / retiring thread busy, 1 VM; 4 VMs",
              f"{fmt(result['1vm']['gpud'].get('dispatch_busy'), '.3f')} / {fmt(result['1vm']['gpud'].get('retire_busy'), '.3f')}; "
              f"{fmt(result['4vm']['gpud'].get('dispatch_busy'), '.3f')} / {fmt(result['4vm']['gpud'].get('retire_busy'), '.3f')}")
    return result


# ----------------------------------------------------------------------------------------------
# Phase 5: GPUHost kernels vs direct Vulkan


def best_rounds(text):
    """NAME WALL_NS DEVICE_NS lines (vkdirect's and malvvm bench gpu kernels'); each name keeps its
    best wall time over the rounds, as malvvm bench gpu run does."""
    best = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit():
            wall, device = int(fields[1]), int(fields[2])
            if fields[0] not in best or wall < best[fields[0]]["wall_ns"]:
                best[fields[0]] = {"wall_ns": wall, "device_ns": device}
    return best


def write_plan(check):
    """The device's own plan (group counts depend on its limits), else the one built with the bundle."""
    path = os.path.join(check.work, "plan.txt")
    r = check.run([check.bin("malvvm"), "bench", "gpu", "plan", path], 60)
    if r.rc == 0 and os.path.exists(path):
        return path, "malvvm bench gpu plan on this device"
    bundled = os.path.join(check.bundle, "plan.txt")
    if not os.path.exists(bundled):
        raise RuntimeError(f"malvvm bench gpu plan: {r.why()}")
    log(f"  malvvm bench gpu plan failed ({r.why()}); using the plan built with the bundle")
    return bundled, "bundled (malvvm bench gpu plan failed here)"


def phase_kernels(check, sampler, results):
    spv = os.path.join(check.bundle, "spv")
    for path in (check.bin("vkdirect"), check.bin("malvvm"), spv):
        if not os.path.exists(path):
            raise Skip(f"{os.path.relpath(path, check.bundle)} is not in the bundle")
    plan_path, plan_source = write_plan(check)
    cases = plans.parse(open(plan_path).read())
    derived_note = None
    try:
        cases.append(plans.derive_scale(cases, 64, 4096, check.args.scale_iterations))
    except plans.PlanError as error:
        derived_note = f"no scale_64 case: {error}"
    direct_plan = os.path.join(check.work, "plan-direct.txt")
    with open(direct_plan, "w") as f:
        f.write(plans.render(cases))
    ours_path, direct_path = os.path.join(check.work, "ours.txt"), os.path.join(check.work, "direct.txt")
    direct_device = None
    for i in range(check.args.kernel_rounds):
        log(f"  round {i + 1}/{check.args.kernel_rounds}: vkdirect, then malvvm bench gpu kernels")
        with sampler.label("kernels/direct"):
            r = check.run([check.bin("vkdirect"), direct_plan, spv], 300)
        if r.rc != 0:
            raise RuntimeError(f"vkdirect: {r.why()}")
        direct_device = direct_device or next((l[10:].strip() for l in r.err.splitlines() if l.startswith("vkdirect: ")), None)
        with open(direct_path, "a") as f:
            f.write(r.out)
        with sampler.label("kernels/ours"):
            r = check.run([check.bin("malvvm"), "bench", "gpu", "kernels"], 300)
        if r.rc != 0:
            raise RuntimeError(f"malvvm bench gpu kernels: {r.why()}")
        with open(ours_path, "a") as f:
            f.write(r.out)
    with open(ours_path) as ours_file, open(direct_path) as direct_file:
        ours, direct = best_rounds(ours_file.read()), best_rounds(direct_file.read())
    kernels = {name: {"ours_wall_us": o["wall_ns"] / 1000, "ours_device_us": o["device_ns"] / 1000,
                      "direct_wall_us": direct[name]["wall_ns"] / 1000 if name in direct else None,
                      "direct_device_us": direct[name]["device_ns"] / 1000 if name in direct else None,
                      "ratio": ratio(o["wall_ns"], direct.get(name, {}).get("wall_ns"))}
               for name, o in ours.items()}
    result = {"plan": plan_source, "plan_file": plan_path, "device": direct_device, "rounds": check.args.kernel_rounds, "kernels": kernels,
              "direct_only": {n: v for n, v in direct.items() if n not in ours}, "note": derived_note}
    if check.args.sharing_seconds > 0 and check.budget.left() > 12 * (check.args.sharing_seconds + 0.3) + 25:
        log(f"  malvvm bench gpu run: scheduler sharing table, {check.args.sharing_seconds} s per row")
        json_path, shares = os.path.join(check.work, "gpu.json"), os.path.join(check.work, "shares.csv")
        with sampler.label("kernels/sharing"):
            r = check.run([check.bin("malvvm"), "bench", "gpu", "run", "--ours", ours_path, "--direct", direct_path, "--json", json_path,
                           "--shares", shares, "--seconds", str(check.args.sharing_seconds)], 300)
        report = read_json(json_path) if r.rc == 0 else None
        if report:
            result["gpu_bench_run"] = report
            result["report_text"] = trim(r.out)
            for k in report.get("kernels", []):
                if k["name"] in kernels:
                    kernels[k["name"]].update(unit=k.get("unit"), ours_rate=k.get("ours"), direct_rate=k.get("direct"))
        else:
            result["gpu_bench_run"] = {"error": r.why()}
            check.failures.append(f"malvvm bench gpu run: {r.why()}")
    else:
        result["gpu_bench_run"] = {"skipped": "--sharing-seconds 0 or too little time left"}
    for name, k in kernels.items():
        check.row("kernels", f"{name}: GPUHost / direct Vulkan",
                  f"{fmt(k['ratio'], '.3f')} ({fmt(k['ours_wall_us'], '.1f')} / {fmt(k['direct_wall_us'], '.1f')} µs)"
                  + verdict(k["ratio"], 1.05, "low"), "<= 1.05")
    sharing = (result.get("gpu_bench_run") or {}).get("sharing") or []
    eight = next((s for s in sharing if s.get("policy") == "equal-share" and s.get("clients") == 8), None)
    if eight:
        p99 = eight["decisionOverheadP99Nanoseconds"] / 1000
        check.row("kernels", "scheduler decision, 8 clients equal share, mean / p99",
                  f"{eight['decisionOverheadMeanNanoseconds'] / 1000:.2f} / {p99:.2f} µs" + verdict(p99, 5, "low"), "p99 < 5 µs")
    return result


# ----------------------------------------------------------------------------------------------
# Phase 6: GEMM vs PyTorch


def tflops(n, nanoseconds):
    return 2.0 * n ** 3 / (nanoseconds * 1e-9) / 1e12 if nanoseconds else None


def phase_gemm(check, sampler, results):
    sizes, kernels = check.args.gemm_sizes, (results.get("kernels") or {})
    ours, direct = kernels.get("kernels") or {}, dict(kernels.get("direct_only") or {})
    for name, k in ours.items():
        if k.get("direct_wall_us") is not None:
            direct[name] = {"wall_ns": k["direct_wall_us"] * 1000, "device_ns": k["direct_device_us"] * 1000}
    result = {"sizes": sizes, "notes": []}
    gpuhost = {n: {"tflops_device": tflops(n, ours[f"sgemm_{n}"]["ours_device_us"] * 1000),
                   "tflops_wall": tflops(n, ours[f"sgemm_{n}"]["ours_wall_us"] * 1000)}
               for n in sizes if f"sgemm_{n}" in ours}
    # malvvm bench gpu gemm times many back-to-back sgemms through GPUHost with device
    # timestamps, with the variant GPUHost picks at each size (and each variant forced, for
    # tuning the choice): it supersedes the kernels phase's single-call rows.
    log("  malvvm bench gpu gemm (GPUHost sgemm, every variant)")
    with sampler.label("gemm/gpuhost"):
        r = check.run([check.bin("malvvm"), "bench", "gpu", "gemm", "--sizes", ",".join(map(str, sizes)),
                       "--seconds", str(1 if not check.args.quick else 0.3), "--each-variant"], 120)
    result["gpu_bench_gemm"] = r.out[-4000:]
    variants = {}
    for line in r.out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "gemm" and fields[2] == "ours_tflops":
            values = dict(zip(fields[2::2], fields[3::2]))
            try:
                gpuhost[int(fields[1])] = {"tflops_device": float(values["ours_tflops"]),
                                           "tflops_wall": float(values.get("wall_tflops", "nan")),
                                           "variant": values.get("variant")}
            except (KeyError, ValueError):
                pass
        elif len(fields) >= 5 and fields[0] == "gemm-variant":
            variants.setdefault(fields[1], {})[fields[2]] = fields[4]
    result["variants"] = variants
    if r.rc != 0:
        result["notes"].append(f"malvvm bench gpu gemm: {r.why()}")
    # the GPU benchmark has no case at the other sizes: run GPUHost's own sgemm SPIR-V through vkdirect
    # with the plan scaled from its 256 and 512 cases (the kernel's speed, without GPUHost's path).
    plan_path = kernels.get("plan_file")
    wanted = [n for n in sizes if f"sgemm_{n}" not in direct]
    if wanted and plan_path and os.path.exists(plan_path):
        cases = plans.parse(open(plan_path).read())
        # A size that would take too long at the speed measured at 512 (lavapipe: minutes at
        # 2048) is left out rather than eating the budget.
        known = direct.get("sgemm_512", {}).get("device_ns")
        derived = []
        for n in wanted:
            calls = check.args.gemm_iterations + 2  # vkdirect's two warm-up calls
            estimate = known * (n / 512) ** 3 * calls / 1e9 if known else None
            if estimate is not None and estimate > min(30, check.budget.left() - 15):
                result["notes"].append(f"sgemm_{n} via vkdirect skipped: ~{estimate:.0f} s at this device's sgemm_512 speed")
                continue
            try:
                derived.append(plans.derive_sgemm(cases, n, check.args.gemm_iterations))
            except plans.PlanError as error:
                result["notes"].append(f"sgemm_{n}: {error}")
        if derived:
            path = os.path.join(check.work, "plan-gemm.txt")
            with open(path, "w") as f:
                f.write(plans.render(derived))
            log(f"  vkdirect: GPUHost's sgemm SPIR-V at {', '.join(c.name[6:] for c in derived)}")
            with sampler.label("gemm/spirv-direct"):
                r = check.run([check.bin("vkdirect"), path, os.path.join(check.bundle, "spv")], 120)
            direct.update(best_rounds(r.out))
            if r.rc != 0:
                result["notes"].append(f"vkdirect: {r.why()}")
    spirv = {n: {"tflops_device": tflops(n, direct[f"sgemm_{n}"]["device_ns"]), "tflops_wall": tflops(n, direct[f"sgemm_{n}"]["wall_ns"])}
             for n in sizes if f"sgemm_{n}" in direct}
    result.update(gpuhost=gpuhost, spirv_direct=spirv)

    log("  PyTorch fp32 matmul")
    with sampler.label("gemm/torch"):
        r = check.run([sys.executable, os.path.join(HERE, "torch_gemm.py"), ",".join(map(str, sizes)),
                       str(check.args.gemm_seconds)], 150, env=check.base_env)
    try:
        torch = json.loads(r.out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        torch = {"skipped": f"torch_gemm.py: {r.why()}"}
    result["torch"] = torch
    for n in sizes:
        theirs = (torch.get("sizes") or {}).get(str(n)) or {}
        if n in gpuhost:
            label, mine = "GPUHost (malvvm bench gpu), GPU time / wall", gpuhost[n]
        elif n in spirv:
            label, mine = "GPUHost's SPIR-V via vkdirect, GPU time / wall", spirv[n]
        else:
            why = [x for x in result["notes"] if f"_{n}" in x or x.startswith("vkdirect:")]
            check.row("gemm", f"sgemm {n}", "not measured: " + (why[0][:100] if why else "the kernels phase has no sgemm measurement"))
            continue
        check.row("gemm", f"sgemm {n}: {label}", f"{sig(mine['tflops_device'])} / {sig(mine['tflops_wall'])} TFLOP/s")
        if theirs:
            mine_over_theirs = ratio(mine["tflops_device"], theirs.get("tflops_back_to_back"))
            result[f"ratio_{n}"] = mine_over_theirs
            check.row("gemm", f"sgemm {n}: PyTorch fp32, back to back / one synchronised call",
                      f"{sig(theirs.get('tflops_back_to_back'))} / {sig(theirs.get('tflops_sync_call'))} TFLOP/s")
            check.row("gemm", f"sgemm {n}: ours / PyTorch (GPU time / back to back)",
                      sig(mine_over_theirs) + verdict(mine_over_theirs, 0.5, "high"), ">= 0.5")
    if "skipped" in torch:
        check.row("gemm", "PyTorch", f"skipped: {torch['skipped']}")
    return result


def sig(value):
    """Three significant digits: TFLOP/s span 0.0007 (lavapipe) to 50 (H200)."""
    return "-" if value is None else f"{value:.3g}"


# ----------------------------------------------------------------------------------------------


def host_facts():
    facts = {"kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(),
             "python": platform.python_version(), "kvm": os.access("/dev/kvm", os.R_OK | os.W_OK)}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                facts["memory_gib"] = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    return facts


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", (name or "unknown").lower()).strip("-")[:48] or "unknown"


def print_table(rows):
    header = ["phase", "measurement", "value", "goal"]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(4)] if rows else [len(h) for h in header]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line.rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where gpu-check-<device>.json goes")
    parser.add_argument("--bundle", default=os.path.dirname(HERE), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a smoke test: every phase, shortened")
    parser.add_argument("--gpu", default="0", help="malvvm's --gpu selector (Vulkan index or name; default 0)")
    parser.add_argument("--icd", help="Vulkan ICD manifest (default: NVIDIA's if present, else the loader's search)")
    parser.add_argument("--rounds", type=int, help="training rounds (default 5; quick 1)")
    parser.add_argument("--warmup", type=int, help="native warm-up runs before the rounds (default 1; quick 0)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 20; quick 2)")
    parser.add_argument("--bench-ms", type=int, help="vgpubench/fullvgpubench ms per row (default 300; quick 40)")
    parser.add_argument("--load-seconds", type=int, help="test=vgpuload seconds (default 8; quick 2)")
    parser.add_argument("--kernel-rounds", type=int, help="alternating kernel rounds (default 2; quick 1)")
    parser.add_argument("--sharing-seconds", type=float, help="malvvm bench gpu run's seconds per sharing row; 0 skips it (default 0.5; quick 0)")
    parser.add_argument("--gemm-sizes", default="512,2048")
    parser.add_argument("--gemm-seconds", type=float, help="PyTorch seconds per size (default 1.5; quick 0.5)")
    parser.add_argument("--gemm-iterations", type=int, help="vkdirect iterations of the scaled sgemm (default 20; quick 2)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 210; quick 170)")
    parser.add_argument("--run-timeout", type=float, default=180, help="limit per VM or native run, s")
    parser.add_argument("--skip", default="", help=f"phases to skip, comma-separated: {','.join(PHASES[1:])}")
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"rounds": (5, 1), "warmup": (1, 0), "epochs": (20, 2), "bench_ms": (300, 40), "load_seconds": (8, 2),
                "kernel_rounds": (2, 1), "sharing_seconds": (0.5, 0), "gemm_seconds": (1.5, 0.5),
                "gemm_iterations": (20, 2), "budget": (210, 170)}
    for key, (full, short) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, short if quick else full)
    args.scale_iterations = 50 if quick else 200
    args.gemm_sizes = [int(s) for s in args.gemm_sizes.split(",") if s]
    args.skip = {s for s in args.skip.split(",") if s}
    unknown = args.skip - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) to skip: {', '.join(sorted(unknown))}")
    args.bundle = os.path.abspath(args.bundle)
    return args


PHASE_FUNCTIONS = {"discovery": phase_discovery, "training": phase_training, "microbench": phase_microbench,
                   "sharing": phase_sharing, "kernels": phase_kernels, "gemm": phase_gemm}


def main(argv):
    args = parse_args(argv)
    started = time.time()
    os.makedirs(args.out, exist_ok=True)
    check = Check(args)
    for name in ("malvvm", "vkdirect"):
        if not os.access(check.bin(name), os.X_OK):
            sys.exit(f"gpu-check: bin/{name} is missing from the bundle {args.bundle}")
    check.host.update(host_facts())
    check.prepare_environment()

    try:
        # NVML numbers GPUs as the driver does; with one GPU (the case here) that is Vulkan's order too.
        device = nvml.NVML(int(args.gpu) if args.gpu.isdigit() else 0)
        total, _ = device.memory()
        nvml_info = {"available": True, "library": device.path, "name": device.name(), "driver": device.driver_version(),
                     "memory_total_mib": total / 2**20}
    except nvml.NVMLError as error:
        device, nvml_info = None, {"available": False, "reason": str(error)}
    check.nvml_info = nvml_info
    sampler = nvml.UtilisationSampler(device)
    sampler.start()
    # SIGTERM ends the run like Ctrl-C: through the finally below, which stops every child
    # (they lead their own sessions, so no signal to our group reaches them).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("gpu-check: stopped by SIGTERM"))

    results, timings = {}, {}
    try:
        for index, phase in enumerate(PHASES, 1):
            if phase in args.skip:
                results[phase] = {"skipped": "--skip"}
                check.row(phase, "skipped", "--skip")
                continue
            if phase != "discovery" and check.budget.left() < 20:
                results[phase] = {"skipped": "the time budget is spent"}
                check.row(phase, "skipped", "time budget spent")
                log(f"[{index}/{len(PHASES)}] {phase}: skipped (time budget spent)")
                continue
            log(f"[{index}/{len(PHASES)}] {phase} ({check.budget.elapsed():.0f} s elapsed)")
            start = time.monotonic()
            try:
                with sampler.label(phase):
                    results[phase] = PHASE_FUNCTIONS[phase](check, sampler, results)
            except Skip as reason:
                results[phase] = {"skipped": str(reason)}
                check.row(phase, "skipped", str(reason))
                log(f"  skipped: {reason}")
            except Exception as error:  # noqa: BLE001 - one phase's failure must not lose the others' results
                message = f"{type(error).__name__}: {error}"
                results[phase] = {"error": message}
                check.failures.append(f"{phase}: {message}")
                check.row(phase, "FAILED", message[:120])
                log(f"  failed: {message}")
            timings[phase] = time.monotonic() - start
            # The GPU's own view of the phase, beside what the phase measured.
            utilisation = sampler.report(phase)
            results[phase]["nvml"] = utilisation if device else None
            if device:
                polled, driver = utilisation["gpu_util_pct"], utilisation["driver_gpu_util_pct"]
                check.row(phase, "GPU util % (NVML polled mean/max; driver samples mean)",
                          f"{fmt(polled and polled['mean'], '.0f')}/{fmt(polled and polled['max'], '.0f')}; "
                          f"{fmt(driver and driver['mean'], '.0f')}")
        cross_phase_rows(check, results, sampler, device)
    finally:
        check.stop_children()
        sampler.stop()
        if device:
            device.shutdown()

    name = (nvml_info.get("name") or (results.get("discovery") or {}).get("vulkan_device")
            or (results.get("sharing") or {}).get("gpud_device") or (results.get("kernels") or {}).get("device") or "unknown")
    report = {
        "tool": "malvvm gpu-check", "format": 1, "device": name, "quick": args.quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "duration_s": time.time() - started,
        "arguments": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        "bundle": check.manifest, "host": check.host, "nvml": nvml_info, "phase_seconds": timings,
        "nvml_by_label": {label: sampler.report(label) for label in sampler.labels()} if device else None,
        "nvml_errors": sampler.errors, "phases": results, "failures": check.failures,
        "table": [dict(zip(["phase", "measurement", "value", "goal"], r)) for r in check.ordered_table()]}
    path = os.path.join(args.out, f"gpu-check-{slug(name)}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"gpu-check: {name}, {'quick' if args.quick else 'full'} run, {time.time() - started:.0f} s, "
          f"bundle {check.manifest.get('commit', '?')}")
    print_table(check.ordered_table())
    log(f"wrote {path}")
    if args.keep_work:
        log(f"scratch directory kept: {check.work}")
    else:
        shutil.rmtree(check.work, ignore_errors=True)
    if check.failures:
        log(f"{len(check.failures)} failure(s); first: {check.failures[0]}")
        return 1
    return 0


def cross_phase_rows(check, results, sampler, device):
    """Goals that compare one phase with another."""
    micro = results.get("microbench") or {}
    kernels = results.get("kernels") or {}
    sync_one = ((micro.get("vgpubench") or {}).get("rows") or {}).get(1, {}).get("sync_us_per_submission")
    direct = ((kernels.get("direct_only") or {}).get("scale_64") or {}).get("wall_ns")
    if sync_one is not None and direct:
        r = sync_one / (direct / 1000)
        micro["sync_over_direct_vulkan"] = r
        check.row("microbench", "para-vGPU sync 1-command / direct Vulkan submit+wait (scale 64)",
                  f"{r:.2f}× ({sync_one:.1f} / {direct / 1000:.1f} µs)" + verdict(r, 1.5, "low"), "<= 1.5×")
    if device:
        for label, goal in (("training/native", ">= 80 %"), ("training/para", ""), ("training/full", ""),
                            ("sharing/1vm", ""), ("sharing/4vm", "")):
            if label in sampler.labels():
                rep = sampler.report(label)
                polled, driver = rep["gpu_util_pct"], rep["driver_gpu_util_pct"]
                value = polled and polled["mean"]
                check.row(label.split("/")[0], f"{label.split('/')[1]}: GPU util % (NVML polled mean/max; driver mean)",
                          f"{fmt(value, '.0f')}/{fmt(polled and polled['max'], '.0f')}; {fmt(driver and driver['mean'], '.0f')}"
                          + (verdict(value, 80, "high") if goal else ""), goal)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
