"""The benchmark charts, each drawn from its result JSON alone (bench/results/*.json), so that
scripts/replot can redraw every PNG without running anything and a reader can check the drawing
against the numbers. The conventions (footer, spread, "n/a") are scripts/lib/plots.py's.

Each draw_* takes the report (the JSON's object), the JSON's path (named in the footer) and the
PNG's path, and returns whether it drew."""
import plots
from plots import NATIVE, NEUTRAL, VARIANT, VM


def _rows_value(rows, batch, key):
    """A microbenchmark row's value; JSON turned the batch-size keys into strings."""
    row = (rows or {}).get(str(batch)) or (rows or {}).get(batch) or {}
    return row.get(key)


def _ok_ms(runs):
    return [r.get("train_ms") if r.get("exit") == 0 else None for r in runs]


def _paired_ratios(numerators, denominators):
    return [a / b if a and b else None for a, b in zip(numerators, denominators)]


# --- scripts/bench-vgpu: training in a VM vs natively ------------------------------------------

def draw_vgpu(report, source, path, log):
    plt = plots.pyplot(log)
    if plt is None:
        return False
    natives, vms = report.get("native_rounds", []), report.get("vm_rounds", [])
    native_s = [ms / 1000 if ms else None for ms in _ok_ms(natives)]
    vm_s = [ms / 1000 if ms else None for ms in _ok_ms(vms)]
    rounds = report.get("rounds") or max(len(natives), len(vms))
    fig, (times, ratio_ax) = plt.subplots(1, 2, figsize=(8.4, 3.9), gridspec_kw={"width_ratios": [1.25, 1]})

    top = plots.bars_with_spread(times, ["native\n(host process)", "VM\n(para-vGPU)"], [native_s, vm_s],
                                 [NATIVE, VM], ".2f", horizontal=False)
    for position, values in enumerate([native_s, vm_s]):
        points = plots.present(values)
        times.scatter([position + 0.33] * len(points), points, s=10, color="#222222", zorder=3,
                      label="one round" if position == 0 and len(points) > 1 else None)
    plots.room_for_labels(times, top, horizontal=False, factor=1.3)
    times.set_ylabel("training time (s)")
    times.set_title("training time, lower is better", fontsize=9)
    if len(plots.present(native_s)) > 1:
        times.legend(loc="upper right", fontsize=7)

    # The ratio of the medians is the headline; the rounds' own ratios (native and VM ran
    # back to back in each round) show how far noise alone moves it.
    headline = report.get("vm_over_native")
    per_round = plots.present(_paired_ratios([r.get("train_ms") for r in vms], [r.get("train_ms") for r in natives]))
    low, high = (min(per_round), max(per_round)) if len(per_round) > 1 else (None, None)
    goal = report.get("goal")
    values = plots.present([headline, low, high, goal, 1.0])
    bottom_limit, top_limit = min(values) - 0.06, max(values) + 0.06
    ratio_ax.axhspan(bottom_limit, 1.0, color=NATIVE, alpha=0.06)
    ratio_ax.axhspan(1.0, top_limit, color=VM, alpha=0.06)
    ratio_ax.text(0.97, 0.03, "below 1: VM faster than native", transform=ratio_ax.transAxes, fontsize=7, color=NATIVE,
                  ha="right")
    ratio_ax.text(0.97, 0.97, "above 1: VM slower than native", transform=ratio_ax.transAxes, fontsize=7, color=VM,
                  ha="right", va="top")
    ratio_ax.axhline(1.0, color="#222222", linewidth=0.8)
    if goal:
        ratio_ax.axhline(goal, color=NEUTRAL, linestyle="--", linewidth=0.8)
        ratio_ax.text(0.03, goal, f"goal ≤ {goal:g}", transform=ratio_ax.get_yaxis_transform(), ha="left", va="bottom",
                      fontsize=7, color=NEUTRAL)
    if headline is None:
        plots.missing(ratio_ax, 0, 1.0, horizontal=False)
    else:
        error = [[headline - low], [high - headline]] if low is not None and high > low else None
        ratio_ax.errorbar([0], [headline], yerr=error, fmt="o", color=VM, ecolor="#222222", capsize=5)
        text = f"{headline:.3f}"
        if low is not None:
            text += f"\nrounds {low:.3f}-{high:.3f}"
            if low <= 1.0 <= high:
                text += "\n(range spans 1: no difference\nbeyond the noise)"
        ratio_ax.text(0.12, headline, text, va="center", ha="left", fontsize=7.5)
    ratio_ax.set_xlim(-0.6, 1.4)
    ratio_ax.set_xticks([])
    ratio_ax.set_ylim(bottom_limit, top_limit)
    ratio_ax.set_ylabel("VM / native (lower is better)")
    ratio_ax.set_title("ratio of the medians", fontsize=9)

    fig.suptitle(f"Digits MLP training ({report.get('epochs', '?')} epochs): in a VM on a para-vGPU vs natively", fontsize=10)
    plots.footer(fig, report, source, plots.rounds_label(rounds),
                 "whiskers on the ratio: the lowest and highest round's own VM/native" if low is not None else None)
    plots.save(fig, plt, path, bottom=0.09)
    return True


# --- scripts/bench-gvmcs: para-vGPU vs full-vGPU and each G-VMCS control ----------------------

def draw_gvmcs(report, source, path, log):
    plt = plots.pyplot(log)
    if plt is None:
        return False
    table = report.get("configurations", [])
    detail = report.get("rounds_detail", {})
    natives = report.get("native_rounds", [])
    names = [row["name"] for row in table]
    colours = ([NATIVE, VM] + [VARIANT] * len(names))[:len(names)]

    def per_round(name, pick, source_key):
        runs = (detail.get(name) or {}).get(source_key)
        if runs is None:  # no per-round record: the summary's median stands alone
            return None
        return [pick(r) for r in runs]

    sync = [per_round(n, lambda m: _rows_value(m.get("rows"), 1, "sync_us"), "micro") or [row.get("sync_us_1")]
            for n, row in zip(names, table)]
    queued = [per_round(n, lambda m: _rows_value(m.get("rows"), 1, "qd_us"), "micro") or [row.get("qd_us_1")]
              for n, row in zip(names, table)]
    exits = [per_round(n, lambda m: m.get("userspace_exits_per_submission"), "micro") or [row.get("userspace_exits_per_submission")]
             for n, row in zip(names, table)]
    native_s = [ms / 1000 if ms else None for ms in _ok_ms(natives)] or \
        [report["native_train_ms"] / 1000 if report.get("native_train_ms") else None]
    train_s = [[ms / 1000 if ms else None for ms in _ok_ms((detail.get(n) or {}).get("train", []))]
               or [row["train_ms"] / 1000 if row.get("train_ms") else None] for n, row in zip(names, table)]

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6))
    panels = [("µs per submission, 1 kernel, synchronous\n(lower is better)", sync, ".1f"),
              ("µs per submission, 8 in flight\n(lower is better)", queued, ".1f"),
              ("userspace exits per submission\n(lower is better)", exits, ".2f")]
    for ax, (title, values, spec) in zip(axes, panels):
        top = plots.bars_with_spread(ax, names, values, colours, spec, show_labels=ax is axes[0])
        plots.room_for_labels(ax, top, factor=1.7)
        ax.set_title(title, fontsize=9)
    training = axes[3]
    native_median, native_low, native_high = plots.spread(native_s)
    # The ratio to native beside each time, so the absolute time and the ratio read together.
    ratios = [f" = {plots.spread(v)[0] / native_median:.3f}×" if plots.spread(v)[0] is not None and native_median else ""
              for v in train_s]
    top = plots.bars_with_spread(training, names, train_s, colours, ".2f", suffixes=ratios, show_labels=False)
    plots.room_for_labels(training, top, factor=2.0)
    if native_median is not None:
        training.axvspan(native_low, native_high, color=NEUTRAL, alpha=0.25)
        training.axvline(native_median, color="#222222", linestyle="--", linewidth=0.9)
        training.text(native_median, 1.0, f"native {native_median:.2f} s", transform=training.get_xaxis_transform(),
                      fontsize=7, va="bottom", ha="center", color="#222222")
    else:
        training.text(0.5, 1.0, "native: n/a", transform=training.transAxes, fontsize=7, va="bottom", ha="center")
    training.set_title("training time, s (lower is better)\n= its ratio to native's median (dashed)\n", fontsize=9)
    fig.suptitle("para-vGPU vs full-vGPU on the G-VMCS model, and the full-vGPU with each control switched", fontsize=10)
    rounds = report.get("rounds") or 1
    plots.footer(fig, report, source, plots.rounds_label(rounds),
                 f"submissions: test=vgpubench / fullvgpubench, {report.get('bench_ms', '?')} ms per batch size; "
                 f"training: test=train, {report.get('epochs', '?')} epochs; grey band: native's own min-max "
                 "(a bar inside it is no different from native beyond the noise)")
    plots.save(fig, plt, path, bottom=0.08)
    return True


# --- scripts/bench-share: VMs sharing one GPU through gpud -------------------------------------

def _share_rounds(row):
    """A count's per-round records; older JSON held one round in the row itself."""
    return row.get("rounds_detail") or [row]


def draw_share(report, source, path, log):
    plt = plots.pyplot(log)
    if plt is None:
        return False
    shared = report.get("shared", {})
    counts = sorted(shared, key=int)
    most = counts[-1] if counts else None
    fig, (over_time, summary) = plt.subplots(1, 2, figsize=(12, 4.3), gridspec_kw={"width_ratios": [1.5, 1]})

    # Over time: the first round with the most VMs, each VM's part of the GPU stacked, and one VM alone.
    palette = ["#dd8452", "#55a868", "#8172b3", "#c44e52", "#937860", "#da8bc3", "#8c8c8c", "#ccb974"]
    first_most = _share_rounds(shared[most])[0] if most else {}
    first_one = _share_rounds(shared["1"])[0] if "1" in shared else {}
    vm_traces = first_most.get("vm_traces")
    if vm_traces:
        names = sorted(vm_traces)
        grid = [t for t, _ in vm_traces[names[0]]]
        stacks = [[u * 100 for _, u in vm_traces[name]] for name in names]
        over_time.stackplot(grid, stacks, labels=[f"VM {i + 1} of {most}" for i in range(len(names))],
                            colors=palette[:len(names)], alpha=0.85)
    else:
        trace = first_most.get("trace") or report.get("utilisation_trace", {}).get(most)
        if trace:
            over_time.plot([t for t, _ in trace], [u * 100 for _, u in trace], color=VM, linewidth=1.2,
                           label=f"{most} VMs sharing one GPU (all together)")
        over_time.text(0.5, 0.04, "each VM's part not recorded in this JSON", transform=over_time.transAxes, ha="center",
                       fontsize=7.5, color=NEUTRAL, style="italic")
    trace_one = first_one.get("trace") or report.get("utilisation_trace", {}).get("1")
    if trace_one:
        over_time.plot([t for t, _ in trace_one], [u * 100 for _, u in trace_one], color=NATIVE, linewidth=1.4,
                       label="1 VM on its own GPU (passthrough-like)")
    over_time.set_xlabel("time since the VMs started (s)")
    over_time.set_ylabel("GPU busy, % of each 2 s window")
    over_time.set_ylim(0, 140)  # room above 100 % for the legend
    over_time.set_yticks(range(0, 101, 20))
    over_time.set_title(f"GPU use over time, {most} VMs sharing vs 1 VM alone (first round)", fontsize=9)
    over_time.legend(loc="upper right", fontsize=7, ncol=3, framealpha=0.9)

    # Summary: aggregate utilisation per count (median, min-max over rounds), each VM's share written in.
    labels, values, colours, notes = [], [], [], []
    for count in counts:
        rounds = _share_rounds(shared[count])
        labels.append(f"{count} VM{'s' if int(count) > 1 else ''}")
        values.append([r.get("utilisation") * 100 if r.get("utilisation") is not None else None for r in rounds])
        colours.append(NATIVE if count == "1" else VM)
        vm_shares = [r.get("vm_shares") for r in rounds if r.get("vm_shares")]
        if vm_shares:
            width = len(vm_shares[0])
            medians = [plots.spread([s[i] for s in vm_shares if len(s) == width])[0] for i in range(width)]
            pairs = [" ".join(f"{m:.2f}" for m in medians[i:i + 2]) for i in range(0, len(medians), 2)]
            notes.append("each VM's\nshare\n" + "\n".join(pairs))
        else:
            notes.append("per-VM\nshares\nnot\nrecorded" if int(count) > 1 else "")
    native_util = (report.get("native") or {}).get("gpu_utilisation_pct")
    native_rounds = report.get("native_rounds")
    labels.append("native\n(1 process)")
    values.append([r.get("gpu_utilisation_pct") for r in native_rounds] if native_rounds else [native_util])
    colours.append(NEUTRAL)
    notes.append("")
    plots.bars_with_spread(summary, labels, values, colours, ".1f", horizontal=False)
    for position, note in enumerate(notes):
        if note:
            summary.text(position, 45, note, ha="center", va="center", fontsize=7, color="white", fontweight="bold")
    summary.set_ylim(0, 125)
    summary.set_ylabel("aggregate GPU utilisation (%), higher is better")
    summary.set_title("utilisation while the VMs train", fontsize=9)

    rounds = max(len(_share_rounds(shared[c])) for c in counts) if counts else 1
    policy = report.get("policy", "?")
    fig.suptitle(f"One GPU shared by VMs through gpud: test=train ({report.get('epochs', '?')} epochs) in each VM, "
                 f"{policy}", fontsize=10)
    jobs = ", ".join(f"{c} VMs {shared[c].get('normalised_job_time_mean', 0):.2f}×" for c in counts
                     if int(c) > 1 and shared[c].get("normalised_job_time_mean") is not None)
    timing = "GPU time is charged when a batch (an epoch) retires, so a 2 s window can count a little over 100 %"
    plots.footer(fig, report, source, plots.rounds_label(rounds),
                 (f"job time vs running alone: {jobs}  ·  " if jobs else "") + timing)
    plots.save(fig, plt, path, bottom=0.09)
    return True


# --- scripts/bench-gpu: the scheduler's share of GPU time per client --------------------------

def draw_gpu_shares(report, source, path, log):
    plt = plots.pyplot(log)
    if plt is None:
        return False
    rows, events = report.get("shares", []), report.get("events", [])
    policies = [p for p in ("best-effort", "equal-share", "fixed-share") if any(r["policy"] == p for r in rows)]
    fig, axes = plt.subplots(1, len(policies), figsize=(15, 4.6), sharey=True, squeeze=False)
    axes = axes[0]
    top = max((r["share"] for r in rows), default=0.5)
    for ax, policy in zip(axes, policies):
        mine = [r for r in rows if r["policy"] == policy]
        for client in sorted({r["client"] for r in mine}):
            points = [(r["t"], r["share"]) for r in mine if r["client"] == client]
            weight = next(r["weight"] for r in mine if r["client"] == client)
            label = f"{client} (weight {weight:g})" if policy == "fixed-share" else client
            ax.plot([t for t, _ in points], [s for _, s in points], marker=".", label=label)
        for event in (e for e in events if e["policy"] == policy):
            ax.axvline(event["t"], color="grey", linestyle=":", linewidth=1)
            # Inside the axes: x in data, y as a fraction of the axes' height.
            ax.text(event["t"], 0.97, " " + event["label"], transform=ax.get_xaxis_transform(), rotation=90,
                    va="top", ha="right", fontsize=7.5, color="#333333",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
        ax.set_title(policy, fontsize=10)
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="center right")
    axes[0].set_ylim(0, top * 1.25)
    window = report.get("window_ms")
    axes[0].set_ylabel("share of device time" + (f" (per {window:g} ms)" if window else ""))
    happenings = ", then ".join(e["label"] for e in events if e["policy"] == (policies[0] if policies else None))
    fig.suptitle("GPUHost scheduler: each client's share of GPU time" + (f" ({happenings})" if happenings else ""), fontsize=10)
    plots.footer(fig, report, source, "1 run per policy, no spread: each point is one window's measured share")
    plots.save(fig, plt, path, bottom=0.07)
    return True


def draw_mlaas(report, source, path, log):
    """The CNN job in its three forms (bench-mlaas, the seed's Figures 1 and 2): training time
    over native's (each round's own ratio), the guest vCPU's busy share of its training time,
    GPU utilisation; one bar per form at the median of its rounds, whiskers min-max."""
    plt = plots.pyplot(log)
    if plt is None:
        return False
    runs = report.get("runs", {})
    names = [n for n in ("native", "vm-guest", "vm-mlaas") if n in runs]
    native = [r.get("train_ms") for r in runs.get("native", [])]

    def ratios(name):
        # Round i of a form against round i of native: the rounds alternate, so the pair shares its load.
        return [t / n if t and n else None for t, n in zip((r.get("train_ms") for r in runs[name]), native)]

    def busy_pct(name):
        return [r["vcpu_busy_ms"] / r["train_ms"] * 100 if r.get("vcpu_busy_ms") is not None and r.get("train_ms") else None
                for r in runs[name]]

    panels = [("training time / native (lower is better)", [ratios(n) for n in names], ".2f"),
              ("guest vCPU busy, % of training time", [busy_pct(n) for n in names], ".1f"),
              ("GPU utilisation, %", [[r.get("gpu_utilisation_pct") for r in runs[n]] for n in names], ".1f")]
    labels = {"native": "native (host threads preprocess)", "vm-guest": "VM, guest vCPU preprocesses",
              "vm-mlaas": "VM, MLaaS preprocess offloaded"}
    colours = {"native": plots.NATIVE, "vm-guest": plots.VM, "vm-mlaas": plots.VARIANT}
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for index, (ax, (title, values, spec)) in enumerate(zip(axes, panels)):
        top = plots.bars_with_spread(ax, [labels[n] for n in names], values, [colours[n] for n in names], spec,
                                     show_labels=index == 0)
        if index == 0:
            goal = report.get("goal_vm_mlaas_over_native")
            ax.axvline(1.0, color=plots.NEUTRAL, linewidth=1)
            if goal:
                ax.axvline(goal, color=plots.VARIANT, linestyle="--", linewidth=1)
                ax.text(goal, len(names) - 0.55, f" goal {goal:g}", fontsize=7, color=plots.VARIANT, va="bottom")
        plots.room_for_labels(ax, top)
        ax.set_title(title, fontsize=9)
    accuracy = [r.get("test_acc") for n in names for r in runs[n]]
    shown = plots.present(accuracy)
    accuracy_text = (f", test accuracy {min(shown):g}" + (f"-{max(shown):g}" if max(shown) > min(shown) else "") + " %"
                     if shown else "")
    fig.suptitle(f"MNIST CNN, {report.get('records', '?')} records, {report.get('epochs', '?')} epochs: "
                 f"native vs VM, preprocessing on the guest's vCPU or offloaded{accuracy_text}", fontsize=10)
    plots.footer(fig, report, source, plots.rounds_label(report.get("rounds")) + " (native has no vCPU: n/a)")
    plots.save(fig, plt, path, bottom=0.08)
    return True


# Which chart each result JSON gets: the JSON's name without the device suffix (gvmcs-cpu -> gvmcs).
CHARTS = {"vgpu": draw_vgpu, "gvmcs": draw_gvmcs, "share": draw_share, "gpu-shares": draw_gpu_shares,
          "mlaas": draw_mlaas}


def chart_for(json_name):
    stem = json_name[:-len(".json")] if json_name.endswith(".json") else json_name
    if stem in CHARTS:
        return CHARTS[stem]
    base = stem.split("-")[0]
    return CHARTS.get(base) if base != "gpu" else None
