"""The soak test's machinery (scripts/soak, issue #14): one `malvvm gpud`, a population of VMs
that use it, and the churn around them — VMs finishing and replaced, SIGKILLs, vGPU hot-plug
cycles, API traffic — with the checks made at the end. scripts/soak is the command line.

Phases (`Soak.run`):

  steady   N training VMs start together and run to the end with API traffic but no kills or
           hot-plugs. Jain's index is measured here: over each VM's GPU time (the daemon's
           per-vGPU `gpu_milliseconds`) from the moment all N are submitting to the last status
           sample in which every one of them still had an epoch to run. With VMs coming and
           going (the churn phase) a share is not meaningful: a VM that boots, is killed or
           finishes inside the window asked for less than its share.
  baseline when those N VMs have gone (the daemon lists no vGPU), gpud's descriptor count and
           RSS: what the daemon holds once it has served VMs (its lazily made state: allocator
           arenas, the scheduler's pools, first-use caches) and holds nothing for any VM.
  churn    until --minutes have passed since the start: N training VMs kept running (each one
           that finishes or is killed is replaced), H hot-plug VMs whose vGPU is attached from
           and detached back to gpud through their VM API, SIGKILLs of random VMs at random
           times, API traffic on gpud's and the VMs' APIs.
  drain    nothing new starts; the VMs that run finish (hot-plug VMs their cycles); then gpud's
           descriptor count and RSS again, which must be back at the baseline.
"""
import http.client
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

from benchlib import ROOT, GPUDaemon, api, api_raw, parse_train

MIB = 1024 * 1024

# The bounds the end state is held to, against the baseline (after the first VMs have gone).
FD_BOUND = 2            # gpud's open descriptors: equal, +-2 (a connection of the API being closed)
RSS_BOUND_MIB = 16      # gpud's RSS: at most 16 MiB above (the allocator keeps freed memory)
JAIN_BOUND = 0.99
JAIN_MIN_WINDOW_S = 2.0


def jain(values):
    """Jain's fairness index: (sum x)^2 / (n sum x^2); 1.0 when all are equal."""
    values = list(values)
    square_sum = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * square_sum) if values and square_sum > 0 else None


def process_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def process_fd_kinds(pid):
    """gpud's open descriptors by what they are ("socket", "anon_inode:[eventfd]",
    "/memfd:malvvm-guest-ram (deleted)", a path), for the report when the count grows."""
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = re.sub(r":\[\d+\]$", "", target)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def guest_ram_mappings(pid):
    """(mappings of a VM's guest RAM memfd in gpud, their resident KiB): one mapping per region
    of each VM it serves; what it touched of them counts in its RSS."""
    count, rss_kib, inside = 0, 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                inside = "malvvm-guest-ram" in line
                count += inside
            elif inside and line.startswith("Rss:"):
                rss_kib += int(line.split()[1])
    return count, rss_kib


def process_rss_kib(pid, field="VmRSS"):
    """A process's resident KiB from /proc/PID/status: VmRSS (all), RssAnon, RssFile, RssShmem."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def train_verdict(text, rc, reference, epochs):
    """(correct, why) for a test=train VM of `epochs` epochs: it exited 0, said PASS, and trained
    epoch for epoch to exactly the reference run's losses and accuracies (the job is
    deterministic: the same data, seed and kernels on the same backend; a longer run's first
    epochs are a shorter one's) and ended at the reference's test accuracy after that many.
    `reference` None: PASS is all we can check."""
    result = parse_train(text)
    lines = [line.rstrip("\r") for line in text.splitlines()]
    if rc != 0:
        return False, f"exited {rc}"
    if "train: PASS" not in lines:
        return False, "no 'train: PASS' line"
    if reference is None:
        return True, "PASS (no reference run to compare with)"
    got = [(e["epoch"], e["loss"], e["train_acc"], e["test_acc"]) for e in result["epochs"]]
    want = [(e["epoch"], e["loss"], e["train_acc"], e["test_acc"]) for e in reference["epochs"][:epochs]]
    if got != want:
        first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        return False, (f"epochs differ from the reference at #{first + 1}: "
                       f"{got[first] if first < len(got) else 'missing'} vs {want[first] if first < len(want) else 'none'}")
    if len(want) != epochs or result["final_test_acc"] != want[-1][3]:
        return False, f"final test accuracy {result['final_test_acc']} % vs the reference's {want[-1][3]} % after {len(want)} epochs"
    return True, f"{len(got)} epochs equal to the reference, {result['final_test_acc']} %"


def hotplug_verdict(text, rc, cycles_done, cycles_wanted):
    """(correct, why) for a test=hotplug VM: every cycle attached, computed (the guest checks
    sgemm + relu against its CPU) and detached, and the guest exited 0 after the last. The PASS
    line is matched loosely: this host's KVM can drop a console byte while the guest takes PIT
    interrupts (docs/gpud.md), and exit 0 already says the guest passed."""
    if rc != 0:
        return False, f"exited {rc}"
    if cycles_done != cycles_wanted:
        return False, f"{cycles_done} of {cycles_wanted} hot-plug cycles done"
    if not re.search(r"PA?S?S", text):
        return False, "no PASS line"
    return True, f"{cycles_done} hot-plug cycles"


class VM:
    """One `malvvm run`, its console (stdout and stderr) in a file."""

    def __init__(self, soak, name, role, cmdline, extra, epochs=None):
        self.name, self.role, self.epochs = name, role, epochs
        self.api = os.path.join(soak.directory, name + ".sock")
        self.console_path = os.path.join(soak.directory, name + ".out")
        self.started = time.monotonic()
        self.killed = False       # SIGKILLed by the soak (a kill that lands after the VM exited does not count)
        self.timed_out = False
        self.cycles_done = 0      # hot-plug VMs
        self.ended = None
        self.verdict = None       # (correct, why) once it has ended
        with open(self.console_path, "w") as console:
            self.proc = subprocess.Popen(
                [soak.binary, "run", "--kernel", soak.kernel, "--memory", "256M", "--name", name, "--api-socket", self.api,
                 *extra, "--cmdline", cmdline], cwd=ROOT, stdout=console, stderr=subprocess.STDOUT)

    def running(self):
        return self.proc.poll() is None

    def console(self):
        try:
            with open(self.console_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def was_killed(self):
        return self.killed and self.proc.returncode == -9

    def age(self):
        return time.monotonic() - self.started


class Soak:
    def __init__(self, binary, kernel, dataset, gpu="cpu", vms=8, hotplug_vms=1, hotplug_cycles=4, epochs=40,
                 minutes=1.0, steady_seconds=10.0, kill_interval=6.0, api_rate=20.0, vm_timeout=300.0, seed=None,
                 log=print, directory=None):
        self.binary, self.kernel, self.dataset, self.gpu = binary, kernel, dataset, gpu
        self.n, self.hotplug_vms, self.hotplug_cycles, self.epochs = vms, hotplug_vms, hotplug_cycles, epochs
        self.minutes, self.steady_seconds, self.steady_epochs = minutes, steady_seconds, epochs
        self.kill_interval, self.api_rate, self.vm_timeout = kill_interval, api_rate, vm_timeout
        self.seed = seed if seed is not None else int(time.time())
        self.random = random.Random(self.seed)            # kills: when and whom
        self.api_random = random.Random(self.seed + 1)    # the API traffic's targets
        self.kills = []           # (elapsed s, VM, its role, its age s)
        self.log = log
        self.directory = directory or tempfile.mkdtemp(prefix="malvvm-soak-")
        self.lock = threading.Lock()
        self.vms = []             # every VM started, in order
        self.serial = 0
        self.spawning = threading.Event()    # churn: replace VMs that end, start hot-plug VMs, kill
        self.stopping = threading.Event()    # the end: background threads leave
        self.api_paused = threading.Event()  # set while gpud's descriptors are counted
        self.api_idle = threading.Event()
        self.counts = {"api_calls": 0, "api_calls_gpud": 0, "api_calls_vm": 0, "api_vm_gone": 0, "kills": 0,
                       "hotplug_attaches": 0, "hotplug_detaches": 0, "hotplug_cycles": 0, "hotplug_aborted_by_kill": 0}
        self.problems = {"api": [], "hotplug": []}
        self.samples = []         # (elapsed s, fds, rss KiB) every progress tick
        self.reference = None
        self.daemon = None
        self.start = None

    # -- the daemon ------------------------------------------------------------------------

    def start_daemon(self):
        self.gpud = GPUDaemon(self.binary, self.directory, ["--gpu", self.gpu, "--policy", "equal-share"])
        self.daemon = self.gpud.proc
        self.gpud_socket, self.gpud_api = self.gpud.socket, self.gpud.api

    def gpud_log(self):
        return self.gpud.log()

    def gpud_alive(self):
        return self.daemon is not None and self.daemon.poll() is None

    def gpud_status(self):
        return self.gpud.status()

    def gpud_resources(self):
        """(open descriptors, RSS KiB) of gpud now, the descriptors the fewest of three looks
        0.1 s apart (one of our own API connections may be closing)."""
        pid = self.daemon.pid
        fds = []
        for i in range(3):
            fds.append(process_fds(pid))
            if i < 2:
                time.sleep(0.1)
        self.last_fd_kinds, self.last_ram_mappings = process_fd_kinds(pid), guest_ram_mappings(pid)
        self.last_rss_parts = {field: process_rss_kib(pid, field) for field in ("RssAnon", "RssFile", "RssShmem")}
        return min(fds), process_rss_kib(pid)

    def quiet_resources(self):
        """gpud's descriptors and RSS with no VM connected and no API call of ours in flight:
        waits (up to 20 s) for its status to list no vGPU, then pauses the API traffic."""
        deadline = time.monotonic() + 20
        vgpus = None
        while time.monotonic() < deadline:
            vgpus = self.gpud_status()["vgpus"]
            if not vgpus:
                break
            time.sleep(0.2)
        self.api_paused.set()
        self.api_idle.wait(15)
        time.sleep(0.5)
        try:
            fds, rss = self.gpud_resources()
        finally:
            self.api_paused.clear()
        return fds, rss, vgpus

    # -- VMs -------------------------------------------------------------------------------

    def next_name(self, prefix):
        with self.lock:
            self.serial += 1
            return f"soak-{prefix}{self.serial}"

    def start_train(self, prefix="t", epochs=None):
        epochs = epochs or self.epochs
        vm = VM(self, self.next_name(prefix), "train", f"test=train epochs={epochs}",
                ["--disk", f"{self.dataset},readonly", "--vgpu", f"gpud={self.gpud_socket},profile=1g.1gb"], epochs)
        with self.lock:
            self.vms.append(vm)
        return vm

    def start_hotplug(self):
        vm = VM(self, self.next_name("h"), "hotplug", f"test=hotplug hotplug_cycles={self.hotplug_cycles}", [])
        with self.lock:
            self.vms.append(vm)
        return vm

    def running(self, role=None):
        with self.lock:
            return [vm for vm in self.vms if vm.running() and (role is None or vm.role == role)]

    def finish(self, vm):
        """Records how a VM ended (its verdict) once its process has exited."""
        if vm.verdict is not None or vm.proc.returncode is None:
            return
        vm.ended = time.monotonic()
        if vm.was_killed():
            vm.verdict = (None, "killed")
        elif vm.timed_out:
            vm.verdict = (False, f"still running after {self.vm_timeout:.0f} s: killed as hung")
        elif vm.role == "train":
            vm.verdict = train_verdict(vm.console(), vm.proc.returncode, self.reference, vm.epochs)
        else:
            vm.verdict = hotplug_verdict(vm.console(), vm.proc.returncode, vm.cycles_done, self.hotplug_cycles)

    def reap(self):
        """Records the training VMs that ended (hot-plug VMs are their controller's) and kills
        any VM past its time limit; returns the training VMs that ended now."""
        ended = []
        with self.lock:
            vms = list(self.vms)
        for vm in vms:
            if vm.verdict is not None:
                continue
            if vm.proc.poll() is None:
                if vm.age() > self.vm_timeout:
                    vm.timed_out = True
                    vm.proc.kill()
                continue
            if vm.role == "train":
                self.finish(vm)
                ended.append(vm)
        return ended

    def kill_gap(self):
        """Seconds to the next SIGKILL: exponential (kills at random moments of VMs' lives) with
        mean `kill_interval`, cut at 3 times that so a short run is sure to see some."""
        return min(self.random.expovariate(1 / self.kill_interval), 3 * self.kill_interval)

    def kill_one(self):
        candidates = [vm for vm in self.running() if vm.age() > 0.3]
        if not candidates:
            return
        vm = self.random.choice(candidates)
        vm.killed = True
        vm.proc.kill()
        with self.lock:
            self.counts["kills"] += 1
            self.kills.append((round(time.monotonic() - self.start, 1), vm.name, vm.role, round(vm.age(), 1)))

    # -- background threads ----------------------------------------------------------------

    def api_traffic(self):
        """GETs on gpud's API and on a random running VM's, `api_rate` a second, until stopped.
        A VM's API may go away with its VM (finished or killed): an error there counts only if
        the VM is still running 5 s later. Every gpud error counts."""
        gpud_paths = ["/status", "/version", "/metrics", "/mlaas"]
        vm_paths = ["/vm", "/vgpus", "/version", "/metrics"]
        period = 1.0 / self.api_rate if self.api_rate > 0 else None
        i = 0
        while not self.stopping.is_set() and period:
            if self.api_paused.is_set():
                self.api_idle.set()
                time.sleep(0.05)
                continue
            self.api_idle.clear()
            i += 1
            # A VM's API once its socket is there (it is bound after the VM is set up).
            vms = [vm for vm in self.running() if os.path.exists(vm.api)]
            vm = self.api_random.choice(vms) if vms and i % 2 == 0 else None
            path = self.api_random.choice(vm_paths if vm else gpud_paths)
            try:
                code, body = api_raw(vm.api if vm else self.gpud_api, "GET", path, timeout=10)
                error = None if code == 200 else f"HTTP {code} {body[:200]!r}"
                if error is None and path != "/metrics":
                    json.loads(body)
            except (OSError, http.client.HTTPException, ValueError) as e:
                error = f"{type(e).__name__}: {e}"
            with self.lock:
                self.counts["api_calls"] += 1
                self.counts["api_calls_vm" if vm else "api_calls_gpud"] += 1
            if error:
                if vm is not None:
                    # Gone with its VM: a socket unlinked or closed as the VM ends.
                    try:
                        vm.proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
                    if not vm.running():
                        with self.lock:
                            self.counts["api_vm_gone"] += 1
                        error = None
                if error:
                    where = f"VM {vm.name}" if vm else "gpud"
                    with self.lock:
                        self.problems["api"].append(f"GET {path} on {where}: {error}")
            time.sleep(period)
        self.api_idle.set()

    def hotplug_controller(self, index):
        """One hot-plug VM after another (while churning): each waits for a card; `hotplug_cycles`
        times its vGPU is attached from gpud (POST /v1/vgpus), used by the guest (the daemon
        counts its first submission) and detached (DELETE, the attention button)."""
        while self.spawning.is_set() and not self.stopping.is_set():
            vm = self.start_hotplug()
            try:
                self.cycle(vm)
            finally:
                try:
                    vm.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    vm.timed_out = True
                    vm.proc.kill()
                    vm.proc.wait()
                self.finish(vm)

    def cycle(self, vm):
        def gone():
            return not vm.running()

        def problem(message):
            # A SIGKILLed VM's sockets close a moment before its process can be waited for.
            try:
                vm.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            if gone() and vm.killed:
                with self.lock:
                    self.counts["hotplug_aborted_by_kill"] += 1
                return
            with self.lock:
                self.problems["hotplug"].append(f"{vm.name}: {message}")

        def wait_until(predicate, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not gone() and not self.stopping.is_set():
                if predicate():
                    return True
                time.sleep(0.02)
            return False

        # Ready when it says so (either half of the line survives a dropped byte), or surely after 5 s.
        started = time.monotonic()
        wait_until(lambda: "waiting for" in vm.console() or "for a device" in vm.console()
                   or time.monotonic() - started > 5, 30)
        for _ in range(self.hotplug_cycles):
            if gone():
                return
            try:
                code, body = api(vm.api, "POST", "/vgpus", {"profile": "1g.1gb", "gpud": self.gpud_socket}, timeout=30)
            except (OSError, http.client.HTTPException, ValueError) as e:
                return problem(f"attach: {type(e).__name__}: {e}")
            if code != 201:
                return problem(f"attach: HTTP {code} {body}")
            with self.lock:
                self.counts["hotplug_attaches"] += 1

            def computing():
                try:
                    return any(v["vm"] == vm.name and v["submissions"] > 0 for v in self.gpud_status()["vgpus"])
                except (OSError, http.client.HTTPException, ValueError, RuntimeError):
                    return False
            if not wait_until(computing, 60):
                if gone():
                    return problem("ended before it computed on the hot-plugged vGPU")
                return problem("did not compute on the hot-plugged vGPU within 60 s")
            try:
                code, detached = api(vm.api, "DELETE", f"/vgpus/{body['id']}", timeout=30)
            except (OSError, http.client.HTTPException, ValueError) as e:
                return problem(f"detach: {type(e).__name__}: {e}")
            if code != 204:
                return problem(f"detach: HTTP {code} {detached}")
            with self.lock:
                self.counts["hotplug_detaches"] += 1
                self.counts["hotplug_cycles"] += 1
            vm.cycles_done += 1
            time.sleep(0.2)  # the guest powers the slot off and waits for the next card

    # -- the run ---------------------------------------------------------------------------

    def progress(self, phase):
        with self.lock:
            vms = list(self.vms)
            counts = dict(self.counts)
        running = sum(vm.running() for vm in vms)
        killed = sum(vm.was_killed() for vm in vms)
        finished = sum(1 for vm in vms if vm.proc.returncode is not None and not vm.was_killed())
        try:
            fds, rss = process_fds(self.daemon.pid), process_rss_kib(self.daemon.pid)
        except (OSError, TypeError):
            fds, rss = None, None
        elapsed = time.monotonic() - self.start
        self.samples.append((round(elapsed, 1), fds, rss))
        rss_text = f"{rss / 1024:.1f} MiB" if rss else "?"
        self.log(f"{elapsed:5.0f} s {phase}: {running} VMs running, {finished} finished, {killed} killed; "
                 f"{counts['hotplug_cycles']} hot-plug cycles, {counts['api_calls']} API calls; gpud {fds} fds, {rss_text}")

    def native(self, epochs):
        done = subprocess.run([self.binary, "bench", "native", "--gpu", self.gpu, "--epochs", str(epochs),
                               "--dataset", self.dataset], cwd=ROOT, capture_output=True, timeout=600)
        result = parse_train(done.stdout.decode(errors="replace"))
        if done.returncode != 0 or len(result["epochs"]) != epochs:
            self.log(f"reference run (bench native, {epochs} epochs) exited {done.returncode}: "
                     f"{done.stderr.decode(errors='replace')[-300:]}")
            return None
        return result

    def reference_run(self):
        """The same job natively (`malvvm bench native`) on the same backend: what every VM's
        epochs must equal. Its epoch time also sizes the steady VMs' job: N VMs sharing the GPU
        train for at least `steady_seconds` (their epochs alone at the native pace; a VM's own
        overhead and the host's load make it longer), so the steady phase runs more epochs than
        the churn's VMs on a fast GPU or with few VMs; its reference is then run again with that
        many (a shorter run's epochs are a longer one's first)."""
        reference = self.native(self.epochs)
        if reference is None:
            return None
        epoch_s = max(statistics.median(e["ms"] for e in reference["epochs"]), 1) / 1000
        self.steady_epochs = min(1000, max(self.epochs, math.ceil(self.steady_seconds / (self.n * epoch_s))))
        if self.steady_epochs > self.epochs:
            reference = self.native(self.steady_epochs)
        return reference

    def steady(self):
        """N training VMs started together; Jain over their GPU time while all of them ran."""
        vms = [self.start_train("s", self.steady_epochs) for _ in range(self.n)]
        names = {vm.name for vm in vms}
        deadline = time.monotonic() + 180
        first = None
        while time.monotonic() < deadline:
            status = self.gpud_status()
            submitting = {v["vm"] for v in status["vgpus"] if v["submissions"] > 0}
            if names <= submitting:
                first = status
                break
            if any(not vm.running() for vm in vms) or not self.gpud_alive():
                break
            self.tick("steady")
            time.sleep(0.1)
        result = {"vms": self.n, "epochs": self.steady_epochs, "window_s": 0.0, "jain": None, "daemon_jain": None, "gpu_ms": {}}
        if first is None:
            result["error"] = "the steady VMs were never all submitting"
            return vms, result
        time.sleep(0.5)   # the first epochs' pipelines
        self.gpud.reset()
        t0 = time.monotonic()
        start = {v["vm"]: v["gpu_milliseconds"] for v in self.gpud_status()["vgpus"] if v["vm"] in names}
        last = None
        while self.gpud_alive():
            status = self.gpud_status()
            now = time.monotonic()
            mine = {v["vm"]: v for v in status["vgpus"] if v["vm"] in names}
            # Every VM still connected and with an epoch to run (one submission per epoch).
            if len(mine) == self.n and all(v["submissions"] < self.steady_epochs for v in mine.values()) \
                    and all(vm.running() for vm in vms):
                last = (now, status, mine)
            else:
                break
            self.tick("steady")
            time.sleep(0.25)
        if last is None:
            result["error"] = "no sample with every steady VM running"
            return vms, result
        t1, status, mine = last
        used = {name: mine[name]["gpu_milliseconds"] - start.get(name, 0) for name in sorted(names)}
        result.update({"window_s": round(t1 - t0, 2), "jain": jain(used.values()), "daemon_jain": status["jain_index"],
                       "utilisation": status["utilisation"], "gpu_ms": {k: round(v, 1) for k, v in used.items()}})
        return vms, result

    def run(self):
        """The whole soak; returns the report (checks included). A daemon that dies or stops
        answering ends the run early, as a failed check."""
        self.start = time.monotonic()
        deadline = self.start + self.minutes * 60
        report = {"directory": self.directory, "seed": self.seed, "error": None}
        self.reference = self.reference_run()
        report["reference"] = None if self.reference is None else {
            "final_test_acc": self.reference["final_test_acc"], "epochs": len(self.reference["epochs"]),
            "device": self.reference["device"]}
        self.start_daemon()
        report["device"] = next((m[1] for m in [re.search(r"gpud: serving (.+?) \((?:best-effort|equal-share|fixed-share)",
                                                          self.gpud_log())] if m), None)
        report["gpud_pid"] = self.daemon.pid
        fds0, rss0 = self.gpud_resources()
        kinds = {"start": (self.last_fd_kinds, self.last_ram_mappings, self.last_rss_parts)}
        self.log(f"gpud (pid {self.daemon.pid}) serves {report['device']}: {fds0} fds, {rss0 / 1024:.1f} MiB; "
                 f"{self.n} training VMs (test=train epochs={self.epochs}; {self.steady_epochs} in the steady phase), "
                 f"{self.hotplug_vms} hot-plug VMs, "
                 f"{self.minutes:g} min, seed {self.seed}")
        api_thread = threading.Thread(target=self.api_traffic, daemon=True)
        api_thread.start()
        controllers = []
        phases = {}
        steady = {"vms": self.n, "window_s": 0.0, "jain": None, "error": "not reached"}
        fds1 = rss1 = left1 = fds2 = rss2 = left2 = None
        answers = False
        self.last_tick = time.monotonic()
        try:
            t = time.monotonic()
            steady_vms, steady = self.steady()
            if steady.get("jain") is not None:
                self.log(f"steady: Jain {steady['jain']:.4f} over {self.n} VMs' GPU time in {steady['window_s']} s "
                         f"(gpud's own index {steady['daemon_jain']:.4f})")
            self.wait_out(steady_vms, "steady", time.monotonic() + self.vm_timeout)
            phases["steady_s"] = round(time.monotonic() - t, 1)
            fds1, rss1, left1 = self.quiet_resources()
            kinds["baseline"] = (self.last_fd_kinds, self.last_ram_mappings, self.last_rss_parts)
            self.log(f"baseline (the steady VMs gone, {len(left1)} vGPUs listed): gpud {fds1} fds, {rss1 / 1024:.1f} MiB")

            t = time.monotonic()
            self.spawning.set()
            controllers = [threading.Thread(target=self.hotplug_controller, args=(i,), daemon=True)
                           for i in range(self.hotplug_vms)]
            for c in controllers:
                c.start()
            for _ in range(self.n):
                self.start_train()
            no_kills = self.kill_interval <= 0
            next_kill = time.monotonic() + (0 if no_kills else self.kill_gap())
            while time.monotonic() < deadline and self.gpud_alive():
                if not no_kills and time.monotonic() >= next_kill:
                    self.kill_one()
                    next_kill = time.monotonic() + self.kill_gap()
                for _ in self.reap():
                    self.start_train()
                self.tick("churn")
                time.sleep(0.05)
            phases["churn_s"] = round(time.monotonic() - t, 1)

            t = time.monotonic()
            self.spawning.clear()
            self.wait_out(None, "drain", time.monotonic() + self.vm_timeout, controllers)
            phases["drain_s"] = round(time.monotonic() - t, 1)
            self.progress("end")
            fds2, rss2, left2 = self.quiet_resources()
            kinds["end"] = (self.last_fd_kinds, self.last_ram_mappings, self.last_rss_parts)
            answers = True
        except (OSError, http.client.HTTPException, ValueError, RuntimeError) as e:
            report["error"] = f"{type(e).__name__}: {e}"
            self.log(f"run ended early: {report['error']}")
        finally:
            self.stopping.set()
            self.spawning.clear()
            for vm in self.running():
                vm.timed_out = not vm.killed
                vm.proc.kill()
                vm.proc.wait()
            for c in controllers:
                c.join(timeout=70)
            self.reap()
            api_thread.join(timeout=15)
        alive = self.gpud_alive()
        phases["total_s"] = round(time.monotonic() - self.start, 1)
        # gpud ends on SIGTERM with 0 (it once hung there, issue #14 item 4).
        stop_rc = "died during the run"
        if alive:
            self.daemon.terminate()
            try:
                stop_rc = self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stop_rc = "still running 30 s after SIGTERM"
                self.daemon.kill()
                self.daemon.wait()
        report.update(phases=phases, counts=dict(self.counts), samples=self.samples, steady=steady, kills=self.kills,
                      gpud={"fds": {"start": fds0, "baseline": fds1, "end": fds2,
                                    "peak": max((s[1] for s in self.samples if s[1] is not None), default=None)},
                            "rss_kib": {"start": rss0, "baseline": rss1, "end": rss2,
                                        "peak": max((s[2] for s in self.samples if s[2] is not None), default=None)},
                            "fd_kinds": {k: v[0] for k, v in kinds.items()},
                            "guest_ram_mappings": {k: v[1] for k, v in kinds.items()},
                            "rss_parts_kib": {k: v[2] for k, v in kinds.items()},
                            "vgpus_listed_at_baseline": left1, "vgpus_listed_at_end": left2,
                            "exit_on_sigterm": stop_rc, "exit_code_when_died": None if alive else self.daemon.returncode,
                            "log_tail": self.gpud_log()[-2000:] if not alive or stop_rc != 0 else None})
        report["checks"] = self.checks(report, alive, answers, steady)
        return report

    def abort(self):
        """Kills every VM and gpud (the soak was interrupted)."""
        self.stopping.set()
        self.spawning.clear()
        with self.lock:
            vms = list(self.vms)
        for vm in vms:
            if vm.running():
                vm.proc.kill()
        if self.gpud_alive():
            self.daemon.kill()
        for vm in vms:
            vm.proc.wait()
        if self.daemon is not None:
            self.daemon.wait()

    def tick(self, phase):
        if time.monotonic() - self.last_tick >= 10:
            self.progress(phase)
            self.last_tick = time.monotonic()

    def wait_out(self, vms, phase, deadline, controllers=()):
        """Waits for `vms` (None: every VM) and the hot-plug `controllers` to end, recording each
        VM; past `deadline` the VMs left are killed as hung. Raises if gpud dies."""
        def left():
            with self.lock:
                pending = [vm for vm in (vms if vms is not None else self.vms) if vm.running()]
            return pending or any(c.is_alive() for c in controllers)
        while left():
            if not self.gpud_alive():
                raise RuntimeError(f"gpud died (exit {self.daemon.returncode})")
            if time.monotonic() > deadline:
                for vm in self.running():
                    vm.timed_out = True
                    vm.proc.kill()
                deadline = float("inf")
            self.reap()
            self.tick(phase)
            time.sleep(0.1)
        for c in controllers:
            c.join(timeout=70)
        self.reap()

    def checks(self, report, alive, answers, steady):
        vms = self.vms
        ended = [vm for vm in vms if vm.verdict is not None]
        judged = [vm for vm in ended if vm.verdict[0] is not None]
        wrong = [vm for vm in judged if not vm.verdict[0]]
        killed = [vm for vm in ended if vm.verdict[0] is None]
        by_role = {role: sum(1 for vm in judged if vm.role == role) for role in ("train", "hotplug")}
        report["vms"] = {"started": len(vms), "train": sum(vm.role == "train" for vm in vms),
                         "hotplug": sum(vm.role == "hotplug" for vm in vms), "killed": len(killed),
                         "correct": len(judged) - len(wrong), "judged": len(judged), "judged_by_role": by_role,
                         "failed": [{"name": vm.name, "role": vm.role, "rc": vm.proc.returncode, "why": vm.verdict[1],
                                     "seconds": round((vm.ended or time.monotonic()) - vm.started, 1),
                                     "console_tail": vm.console()[-600:]} for vm in wrong]}
        fds, rss = report["gpud"]["fds"], report["gpud"]["rss_kib"]
        checks = []

        def check(name, passed, value, bound, detail=None):
            checks.append({"name": name, "passed": bool(passed), "value": value, "bound": bound, "detail": detail})

        check("reference run", self.reference is not None,
              (f"{self.reference['epochs'][self.epochs - 1]['test_acc']} % after {self.epochs} epochs"
               + (f", {self.reference['final_test_acc']} % after {self.steady_epochs}" if self.steady_epochs > self.epochs else ""))
              if self.reference else "failed",
              "bench native exits 0")
        check("VM results", judged and not wrong and len(ended) == len(vms),
              f"{len(judged) - len(wrong)}/{len(judged)} correct ({by_role['train']} train, {by_role['hotplug']} hot-plug; "
              f"{len(killed)} killed)",
              "every VM not killed: exit 0, result equal to the reference",
              "; ".join(f"{vm.name}: {vm.verdict[1]}" for vm in wrong[:5]) or None)
        check("gpud alive", alive and answers, "answers /v1/status" if alive and answers else
              (f"died (exit {self.daemon.returncode})" if not alive else f"does not answer: {report['error']}"),
              "running, answers", report["error"])
        check("gpud exits on SIGTERM", report["gpud"]["exit_on_sigterm"] == 0, f"exit {report['gpud']['exit_on_sigterm']}",
              "0 within 30 s")
        check("gpud vGPUs released", alive and report["gpud"]["vgpus_listed_at_end"] == [],
              f"{len(report['gpud']['vgpus_listed_at_end'] or [])} listed after the last VM", "0")
        fd_ok = None not in (fds["baseline"], fds["end"]) and abs(fds["end"] - fds["baseline"]) <= FD_BOUND
        kinds, mappings = report["gpud"]["fd_kinds"], report["gpud"]["guest_ram_mappings"]
        grown = in_guest_ram = None
        if "baseline" in kinds and "end" in kinds:
            grown = ", ".join(f"{kinds['end'].get(k, 0) - kinds['baseline'].get(k, 0):+d} {k}"
                              for k in sorted(set(kinds["end"]) | set(kinds["baseline"]))
                              if kinds["end"].get(k, 0) != kinds["baseline"].get(k, 0))
            grown = (f"{grown}; " if grown else "") + \
                f"guest RAM mappings {mappings['baseline'][0]} -> {mappings['end'][0]}"
            parts = report["gpud"]["rss_parts_kib"]
            in_guest_ram = (f"of it in VMs' guest RAM mappings: {mappings['baseline'][1] / 1024:.1f} -> "
                            f"{mappings['end'][1] / 1024:.1f} MiB; anonymous {parts['baseline']['RssAnon'] / 1024:.1f} -> "
                            f"{parts['end']['RssAnon'] / 1024:.1f} MiB")
        check("gpud descriptors", fd_ok, f"{fds['baseline']} -> {fds['end']} (start {fds['start']}, peak {fds['peak']})",
              f"end = baseline +-{FD_BOUND}", grown)
        rss_ok = None not in (rss["baseline"], rss["end"]) and rss["end"] - rss["baseline"] <= RSS_BOUND_MIB * 1024
        check("gpud RSS", rss_ok,
              (f"{rss['baseline'] / 1024:.1f} -> {rss['end'] / 1024:.1f} MiB (start {rss['start'] / 1024:.1f}, "
               f"peak {(rss['peak'] or 0) / 1024:.1f})") if None not in (rss["baseline"], rss["end"]) else "not measured",
              f"end <= baseline + {RSS_BOUND_MIB} MiB", in_guest_ram)
        j = steady.get("jain")
        check("Jain (steady phase)", j is not None and j >= JAIN_BOUND and steady["window_s"] >= JAIN_MIN_WINDOW_S,
              f"{j:.4f} over {steady['vms']} VMs, {steady['window_s']} s" if j is not None else steady.get("error", "not measured"),
              f">= {JAIN_BOUND} over >= {JAIN_MIN_WINDOW_S:g} s")
        api = self.problems["api"]
        check("API traffic", self.counts["api_calls"] > 0 and not api,
              f"{self.counts['api_calls']} calls, {len(api)} failed", "every call on gpud or a running VM answered",
              "; ".join(api[:3]) or None)
        if self.hotplug_vms > 0:
            hp = self.problems["hotplug"]
            check("hot-plug", self.counts["hotplug_cycles"] > 0 and not hp,
                  f"{self.counts['hotplug_cycles']} cycles, {len(hp)} failed", ">= 1 cycle, none failed", "; ".join(hp[:3]) or None)
        if self.kill_interval > 0:
            check("SIGKILLs", self.counts["kills"] > 0, f"{self.counts['kills']} VMs killed", ">= 1")
        return checks


def remove_directory(path):
    shutil.rmtree(path, ignore_errors=True)
