"""What the Python benchmarks in scripts/ share: the release build, running malvvm, reading the
guest's test=train output, HTTP over the API sockets, and what every result JSON records about
where it ran (the device, the host's load, the time). Drawing is scripts/lib/plots.py's."""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNEL = "Guest/build/malvguest.elf"
DATASET = "Guest/build/digits.img"
RESULTS = os.path.join(ROOT, "bench", "results")

EPOCH = re.compile(r"^train: epoch (\d+) loss ([0-9.naninf]+) train-acc ([0-9.]+)% test-acc ([0-9.]+)% time (\d+) ms$")
FINAL = re.compile(r"^train: final test accuracy ([0-9.]+)%$")
SUBMISSIONS = re.compile(r"^train: (\d+) submissions \((\d+) commands.*? in (\d+) ms, (\d+) train images/s")
# `bench native` names the device in parentheses ("backend vulkan (llvmpipe (LLVM 15.0.6, 256 bits)), native");
# the guest names only the backend.
BACKEND = re.compile(r"^train: backend (\w+)(?: \((.*)\), native)?")
UTIL = re.compile(r"GPU utilisation ([0-9.]+)%")


def logger(name):
    def log(message):
        print(f"{name}: {message}", file=sys.stderr, flush=True)
    return log


def parse_train(text):
    """The guest's (or `malvvm bench native`'s) test=train report."""
    epochs, final, submissions, commands, images, backend, util, job_ms = [], None, None, None, None, None, None, None
    device = None
    for line in text.splitlines():
        line = line.rstrip("\r")
        if m := EPOCH.match(line):
            epochs.append({"epoch": int(m[1]), "loss": float(m[2]), "train_acc": float(m[3]),
                           "test_acc": float(m[4]), "ms": int(m[5])})
        elif m := FINAL.match(line):
            final = float(m[1])
        elif m := SUBMISSIONS.match(line):
            submissions, commands, job_ms, images = int(m[1]), int(m[2]), int(m[3]), int(m[4])
        elif m := BACKEND.match(line):
            backend, device = m[1], m[2]
        if m := UTIL.search(line):
            util = float(m[1])
    return {"epochs": epochs, "final_test_acc": final, "submissions": submissions, "commands": commands,
            "train_images_per_s": images, "backend": backend, "device": device, "gpu_utilisation_pct": util,
            "train_ms": sum(e["ms"] for e in epochs), "job_ms": job_ms}


def run(cmd, timeout=1800):
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")


def release_binary(build, log):
    """The release malvvm, built first unless `build` is false."""
    if build:
        log("building malvvm (release)")
        if subprocess.run(["swift", "build", "-c", "release", "--product", "malvvm"], cwd=ROOT).returncode != 0:
            sys.exit("release build failed")
    bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    return os.path.join(bindir, "malvvm")


def check_guest(name):
    for path in (KERNEL, DATASET):
        if not os.path.exists(os.path.join(ROOT, path)):
            sys.exit(f"{name}: {path} is missing (scripts/build-guest, scripts/make-dataset)")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def api_raw(socket_path, method, path, body=None, timeout=30):
    """One request to a malvvm API socket: (status, raw body). Raises OSError or
    http.client.HTTPException when the socket does not answer in `timeout` seconds."""
    connection = UnixHTTPConnection(socket_path, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        connection.request(method, "/v1" + path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def api(socket_path, method, path, body=None, timeout=30):
    """One request to a malvvm API socket: (status, decoded JSON or None)."""
    status, raw = api_raw(socket_path, method, path, body, timeout)
    return status, (json.loads(raw) if raw else None)


def run_vm(binary, args, log, what):
    """`malvvm run ARGS --metrics FILE`: (exit code, stdout text, the metrics report or None)."""
    import tempfile
    with tempfile.NamedTemporaryFile(prefix="bench-metrics-", suffix=".json", delete=False) as tmp:
        metrics_path = tmp.name
    try:
        rc, out, err = run([binary, "run", "--api-socket", "none", "--metrics", metrics_path] + args)
        if rc != 0:
            log(f"{what} exited {rc}: {err.strip()[-400:]}")
        try:
            with open(metrics_path) as f:
                metrics = json.load(f)
        except (OSError, ValueError):
            metrics = None
        return rc, out.decode(errors="replace"), metrics
    finally:
        os.unlink(metrics_path)


class GPUDaemon:
    """`malvvm gpud` on a socket of its own in `directory`, its output in gpud.out there; started
    with `options` (`--gpu`, `--policy`, ...) and waited for until it serves (RuntimeError if not)."""

    def __init__(self, binary, directory, options):
        self.socket = os.path.join(directory, "gpud.sock")
        self.api = self.socket + ".api"
        self.out = open(os.path.join(directory, "gpud.out"), "w+")
        self.proc = subprocess.Popen([binary, "gpud", "--socket", self.socket, *options],
                                     cwd=ROOT, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if "gpud: serving" in self.log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gpud did not start: {self.log()[-500:]}")

    def log(self):
        self.out.seek(0)
        return self.out.read()

    def status(self):
        code, body = api(self.api, "GET", "/status")
        if code != 200:
            raise RuntimeError(f"gpud status: HTTP {code}")
        return body

    def reset(self):
        api(self.api, "PUT", "/metrics/reset")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def userspace_exits(metrics, serial_bytes):
    """The VMM's port-I/O and MMIO exits, less one port write per console byte the guest printed."""
    vmm = (metrics or {}).get("vmm", {})
    return vmm.get("port_io_exits", 0) + vmm.get("mmio_exits", 0) - serial_bytes


def host_gpus(binary):
    """The host's Vulkan devices by name, from `malvvm gpus --json` ([] when it fails)."""
    rc, out, _ = run([binary, "gpus", "--json"], timeout=120)
    try:
        inventory = json.loads(out) if rc == 0 else {}
    except ValueError:
        inventory = {}
    return [v["name"] for gpu in inventory.get("gpus", []) for v in gpu.get("vulkan", []) if v.get("name")]


def device_name(gpu, runs, gpus):
    """The device a benchmark ran on: what a native run printed (the scheduler's own device),
    else the CPU reference for --gpu cpu, else the only or the named Vulkan device."""
    named = next((r.get("device") for r in runs if r.get("device")), None)
    if named:
        return named
    if gpu == "cpu":
        return "CPU reference backend"
    if gpu == "auto" and len(gpus) == 1:
        return gpus[0]
    matching = [g for g in gpus if gpu != "auto" and gpu.lower() in g.lower()]
    return matching[0] if len(matching) == 1 else None


class HostLoad:
    """The 1-minute load average when a benchmark starts and ends, and the CPU count: timings
    taken beside another build or benchmark are slower, and the JSON should say so."""

    def __init__(self):
        self.before = os.getloadavg()[0]

    def record(self):
        return {"cpus": os.cpu_count(), "before": round(self.before, 2), "after": round(os.getloadavg()[0], 2)}


def recorded_now():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
