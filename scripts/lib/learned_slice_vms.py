"""learned-slice with VMs (issue #17, item 5, "ML for OS"): one VM trains, three VMs send small
inference-like submissions, all four on one `malvvm gpud` under equal share. In alternate
rounds the training VM selects the MLaaS service learned-slice (`--mlaas learned-slice`; the
daemon loaded it with `gpud --mlaas`); the static alternative is the same run without it (a
fixed slice). The other VMs never select it.

  trainer  test=vgpuload depth=2 batch=B: back-to-back batches of B 64x64x64 SGEMMs, many
           time slices long (B from --trainer-batch)
  small    test=vgpuload depth=1 batch=1 think=T: one SGEMM, then a think time drawn from
           [T/2, 3T/2], as an inference client

Measured per round: the small VMs' round trip (submit to fence, their guests' TSC: their own
GPU time plus their wait behind others) p50 and p99, the trainer's submissions/s, the daemon's
utilisation and two fairness indices over the measuring window: the daemon's Jain index (every
client that asked for time against an equal share: low here by design, the small VMs ask for
far less) and a demand-aware one (`demand_aware_jain`): the small VMs wanted what they used, the
training VM all of its entitlement.
"""
import re
import statistics
import subprocess
import tempfile
import time

from benchlib import KERNEL, ROOT, GPUDaemon

ROUND_TRIP = re.compile(r"^vgpuload: round trip p50 (\d+) us p99 (\d+) us max (\d+) us \((\d+) samples\)")
RATE = re.compile(r"^vgpuload: (\d+) submissions of (\d+) commands in (\d+) ms")


def demand_aware_jain(clients, utilisation, backlogged):
    """Jain's index over each client's GPU time against what it should have had given what it
    asked for: a client of a `backlogged` VM (the trainer: it always has work queued) should
    have had its whole entitlement (the policy's `entitled_share`: a quarter under equal share
    with four VMs, which leaves an idle VM's share idle, as NVIDIA's equal share does); any other
    client (a small, closed-loop VM) wanted what it used, up to its entitlement — whether it
    waited for it is what its round trip measures. So the index falls when a backlogged VM gets
    less than its entitlement (the GPU given to others, or lost to overhead: cutting's too), or
    when a small VM gets more than its own; 1.0 is exact."""
    ratios = []
    for c in clients:
        used = c["measured_share"] * utilisation
        entitled = c["entitled_share"]
        if c["vm"] in backlogged:
            target = entitled
        elif used > 0:
            target = min(used, entitled)
        else:
            continue
        if target > 0:
            ratios.append(used / target)
    return sum(ratios) ** 2 / (len(ratios) * sum(r * r for r in ratios)) if ratios else None


def wait_for(predicate, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def one_round(binary, gpu, learned, seconds, trainer_batch, think_us, log):
    with tempfile.TemporaryDirectory(prefix="malvvm-learned-slice-") as directory:
        daemon = GPUDaemon(binary, directory, ["--gpu", gpu, "--policy", "equal-share", "--mlaas", "learned-slice",
                                               "--log-level", "info"])
        procs = []
        try:
            def vm(name, cmdline, extra=()):
                return subprocess.Popen([binary, "run", "--kernel", KERNEL, "--memory", "256M", "--name", name,
                                         "--api-socket", "none", "--vgpu", f"gpud={daemon.socket},profile=1g.1gb",
                                         *extra, "--cmdline", cmdline],
                                        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

            # The trainer outlives the small VMs, so every small submission meets it.
            trainer = vm("trainer", f"test=vgpuload depth=2 batch={trainer_batch} seconds={seconds + 8}",
                         ("--mlaas", "learned-slice") if learned else ())
            procs.append(trainer)
            wait_for(lambda: any(v["submissions"] > 0 for v in daemon.status()["vgpus"]), "the trainer's first batch")
            smalls = [vm(f"small{i}", f"test=vgpuload depth=1 batch=1 think={think_us} seconds={seconds + 2}") for i in range(3)]
            procs += smalls
            try:
                wait_for(lambda: sum(v["submissions"] > 0 for v in daemon.status()["vgpus"]) >= 4, "four submitting VMs")
            except RuntimeError:
                gone = [(p.args[p.args.index("--name") + 1], p.returncode, p.stderr.read().decode(errors="replace")[-300:])
                        for p in procs if p.poll() is not None]
                raise RuntimeError(f"not four VMs submitting: {daemon.status()['vgpus']}; VMs that ended: {gone}")
            time.sleep(1)  # the model's first measurements, the pipelines' first use
            daemon.reset()
            time.sleep(seconds)
            status = daemon.status()
            outputs = [p.communicate(timeout=600) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            daemon.stop()
        texts = [out.decode(errors="replace") for out, _ in outputs]
        for p, (out, err) in zip(procs, outputs):
            if p.returncode != 0:
                raise RuntimeError(f"a VM exited {p.returncode}: {err.decode(errors='replace')[-400:]}")

        def matched(pattern, text):
            return next((m for m in (pattern.match(line.rstrip("\r")) for line in text.splitlines()) if m), None)

        trips = [matched(ROUND_TRIP, t) for t in texts[1:]]
        rate = matched(RATE, texts[0])
        if None in trips or rate is None:
            raise RuntimeError("a VM did not report its round trips or rate")
        vgpus = [{"vm": v["vm"], "measured_share": v["measured_share"], "submissions": v["submissions"]} for v in status["vgpus"]]
        # A client's name is its device's, "VM/vGPU/ctxN(label)".
        clients = [{"vm": c["name"].split("/")[0], "name": c["name"], "measured_share": c["measured_share"],
                    "entitled_share": c["entitled_share"]} for c in status["clients"]]
        # The pooled p99 of three VMs: the worst of their p99s (each is over its own samples).
        round_ = {
            "learned": learned,
            "small_p50_us": statistics.median(int(m[1]) for m in trips),
            "small_p99_us": max(int(m[2]) for m in trips),
            "small_max_us": max(int(m[3]) for m in trips),
            "small_samples": sum(int(m[4]) for m in trips),
            "trainer_submissions_per_s": int(rate[1]) * 1000 / max(int(rate[3]), 1),
            "utilisation": status["utilisation"],
            "jain": status["jain_index"],
            "jain_demand_aware": demand_aware_jain(clients, status["utilisation"], {"trainer"}),
            "vgpus": vgpus,
            "clients": clients,
            # The daemon names its device when it starts ("gpud: serving llvmpipe (...) (equal-share, ...").
            "device": next((m[1] for m in [re.search(r"gpud: serving (.+?) \((?:best-effort|equal-share|fixed-share)", daemon.log())] if m), None),
            "learned_report": next((line.split("] ", 1)[-1] for line in daemon.log().splitlines() if "VM 'trainer': " in line), None),
        }
        log(f"learned-slice VMs, {'learned-slice' if learned else 'fixed slice'}: small p99 {round_['small_p99_us']} us, "
            f"trainer {round_['trainer_submissions_per_s']:.1f} batches/s, Jain (demand-aware) {round_['jain_demand_aware']:.4f}")
        return round_


def measure(binary, gpu, rounds, seconds, trainer_batch, think_us, log):
    """`rounds` pairs of rounds, the modes alternating which goes first; medians per mode."""
    results = []
    for r in range(rounds):
        order = [False, True] if r % 2 == 0 else [True, False]
        for learned in order:
            results.append(one_round(binary, gpu, learned, seconds, trainer_batch, think_us, log))

    def median(learned, key):
        values = [x[key] for x in results if x["learned"] == learned and x[key] is not None]
        return statistics.median(values) if values else None

    summary = {mode: {key: median(learned, key) for key in ("small_p50_us", "small_p99_us", "trainer_submissions_per_s",
                                                           "utilisation", "jain", "jain_demand_aware")}
               for mode, learned in (("fixed", False), ("learned", True))}
    fixed, learned = summary["fixed"], summary["learned"]
    summary["p99_ratio"] = fixed["small_p99_us"] / learned["small_p99_us"] if learned["small_p99_us"] else None
    return {"rounds": results, "summary": summary, "seconds": seconds, "trainer_batch": trainer_batch, "think_us": think_us,
            "device": next((r["device"] for r in results if r.get("device")), None)}
