"""How every benchmark chart in bench/results is drawn, so that a reader understands it without
the code: a title saying what was measured, a footer naming the device it ran on, the number of
rounds and what the spread marks show, the host load; missing values written "n/a" (never drawn
as 0); labels kept inside the axes; ratios said with their direction ("lower is better").

Only drawing lives here: the benchmarks record what a chart needs in their JSON (device,
rounds, per-round values, host load), and scripts/lib/charts.py turns one JSON into one PNG."""
import os
import statistics
import subprocess
import sys

# One colour per role, the same in every chart.
NATIVE = "#4c72b0"
VM = "#dd8452"
VARIANT = "#c44e52"
NEUTRAL = "#8c8c8c"


def pyplot(log):
    """matplotlib.pyplot on the Agg backend (installed with pip if missing), or None."""
    try:
        import matplotlib
    except ImportError:
        log("installing matplotlib with pip")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--user", "--no-warn-script-location", "matplotlib"],
                       check=False)
        # The user site directory may not have existed when this interpreter started.
        import importlib
        import site
        if site.getusersitepackages() not in sys.path:
            sys.path.append(site.getusersitepackages())
        importlib.invalidate_caches()
        try:
            import matplotlib
        except ImportError:
            log("matplotlib unavailable: no chart")
            return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def present(values):
    return [v for v in values if v is not None]


def spread(values):
    """(median, min, max) of the values that exist, or (None, None, None)."""
    values = present(values)
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def device_label(report):
    """The device a benchmark ran on, as its JSON recorded it. Older JSON kept only the backend
    ("vulkan" could be lavapipe or a real GPU), so say that the name is missing."""
    device = report.get("device")
    if device:
        return device
    backend = report.get("backend")
    if backend == "cpu":
        return "CPU reference backend"
    if backend:
        return f"backend {backend} (device name not recorded)"
    return "device not recorded"


def rounds_label(rounds, spread_what="min-max"):
    """How many rounds the numbers come from and what the spread marks show."""
    if not rounds or rounds <= 1:
        return "1 round, no spread"
    return f"median of {rounds} rounds, whiskers {spread_what}"


def load_label(report):
    """The host's load average while the benchmark ran (another build or bench skews timings)."""
    load = report.get("host_load")
    if not load:
        return "host load not recorded"
    cpus = load.get("cpus")
    values = present([load.get("before"), load.get("after")])
    if not values:
        return "host load not recorded"
    text = "host load " + "-".join(f"{v:.1f}" for v in sorted(set(round(v, 1) for v in values)))
    return text + (f" on {cpus} CPUs" if cpus else "")


def footer(fig, report, source, rounds_text, extra=None):
    """One footer line under the axes: device · rounds and spread · host load · source."""
    parts = [f"device: {device_label(report)}", rounds_text, load_label(report)]
    if report.get("recorded"):
        parts.append(report["recorded"])
    parts.append(os.path.basename(source))
    lines = ["  ·  ".join(parts)]
    if extra:
        lines.append(extra)
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, color="#444444", ha="left", va="bottom")


def missing(ax, x, y, horizontal=True):
    """An "n/a" where a value is missing, in place of a bar or point (a bar of 0 would read as a result)."""
    ax.text(x, y, " n/a", va="center", ha="left" if horizontal else "center", fontsize=8, color=NEUTRAL, style="italic")


def bars_with_spread(ax, labels, per_label_values, colours, value_format, horizontal=True, suffixes=None,
                     show_labels=True):
    """One bar per label at the median of its per-round values, whiskers from min to max, the
    median (and its suffix, if any) written at the bar's end; "n/a" where there is no value.
    Returns the largest value drawn."""
    top = 0.0
    positions = range(len(labels))
    suffixes = suffixes or [""] * len(labels)
    for position, values, colour, suffix in zip(positions, per_label_values, colours, suffixes):
        middle, low, high = spread(values)
        if middle is None:
            missing(ax, 0, position, horizontal)
            continue
        error = [[middle - low], [high - middle]] if high > low else None
        if horizontal:
            ax.barh(position, middle, color=colour, xerr=error, capsize=3, ecolor="#222222")
        else:
            ax.bar(position, middle, color=colour, yerr=error, capsize=4, ecolor="#222222", width=0.55)
        top = max(top, high)
        text = format(middle, value_format)
        if high > low:
            text += f"  ({format(low, value_format)}-{format(high, value_format)})"
        text += suffix
        if horizontal:
            ax.text(high, position, "  " + text, va="center", ha="left", fontsize=7.5)
        else:
            ax.text(position, high, text.replace("  ", "\n"), va="bottom", ha="center", fontsize=8)
    shown = labels if show_labels else [""] * len(labels)
    # Every label's row stays inside the axes, also one with only an "n/a" (no bar to fit).
    if horizontal:
        ax.set_yticks(list(positions), shown)
        ax.set_ylim(len(labels) - 0.5, -0.5)
    else:
        ax.set_xticks(list(positions), shown)
        ax.set_xlim(-0.5, len(labels) - 0.5)
    return top


def room_for_labels(ax, top, horizontal=True, factor=1.45):
    """Extend the value axis so the value written past the longest bar stays inside the axes."""
    limit = (top or 1.0) * factor
    if horizontal:
        ax.set_xlim(0, limit)
    else:
        ax.set_ylim(0, limit)


def save(fig, plt, path, bottom):
    """Lay out, leaving `bottom` (figure fraction) for the footer, write, close."""
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
