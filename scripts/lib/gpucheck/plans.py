"""vkdirect's plans (written by `malvvm bench gpu plan`), and cases derived from them for sizes
the GPU benchmark has no case for: the same SPIR-V with the grid, push constants and buffers scaled.

Derivation never assumes a kernel's tiling: a number is scaled only in the way it was seen to
scale between two planned sizes (sgemm 256 → 512), or with the element count it equals (scale).
Anything that does not fit that pattern is refused, and the caller reports why.
"""
import math
from dataclasses import dataclass, field


@dataclass
class Dispatch:
    shader: str
    gx: int
    gy: int
    bindings: list
    push: list


@dataclass
class Case:
    name: str
    iterations: int
    buffers: list = field(default_factory=list)
    dispatches: list = field(default_factory=list)


class PlanError(Exception):
    pass


def parse(text):
    cases, current = [], None
    words = iter(text.split())
    try:
        for word in words:
            if word == "case":
                current = Case(next(words), int(next(words)))
            elif word == "buffer":
                current.buffers.append(int(next(words)))
            elif word == "dispatch":
                shader, gx, gy = next(words), int(next(words)), int(next(words))
                bindings = [int(next(words)) for _ in range(int(next(words)))]
                push = [int(next(words)) for _ in range(int(next(words)))]
                current.dispatches.append(Dispatch(shader, gx, gy, bindings, push))
            elif word == "end":
                cases.append(current)
                current = None
            else:
                raise PlanError(f"unexpected '{word}'")
    except (StopIteration, ValueError, AttributeError) as error:
        raise PlanError(f"malformed plan: {error}") from None
    return cases


def render(cases):
    lines = []
    for case in cases:
        lines.append(f"case {case.name} {case.iterations}")
        lines += [f"buffer {size}" for size in case.buffers]
        for d in case.dispatches:
            lines.append(" ".join(str(x) for x in [
                "dispatch", d.shader, d.gx, d.gy, len(d.bindings), *d.bindings, len(d.push), *d.push]))
        lines.append("end")
    return "\n".join(lines) + "\n"


def by_name(cases, name):
    return next((c for c in cases if c.name == name), None)


def _scaled(small, large, factor, what):
    """`large` continued by `factor` the way it grew from `small` (×1, ×2 or ×4 per doubling)."""
    if small == large:
        return large
    if small == 0:
        raise PlanError(f"{what}: {small} → {large} follows no pattern")
    growth = large / small
    if growth == 2:
        value = large * factor
    elif growth == 4:
        value = large * factor * factor
    else:
        raise PlanError(f"{what}: grows ×{growth:g} per doubling, neither linear nor quadratic")
    if value != int(value):
        raise PlanError(f"{what}: {value} is not a whole number")
    return int(value)


def derive_sgemm(cases, size, iterations, max_groups_x=65535):
    """An sgemm_SIZE case from the planned sgemm_256 and sgemm_512 (square matrices)."""
    small, large = by_name(cases, "sgemm_256"), by_name(cases, "sgemm_512")
    if small is None or large is None:
        raise PlanError("the plan has no sgemm_256 and sgemm_512 cases to scale from")
    if len(small.buffers) != len(large.buffers) or len(small.dispatches) != len(large.dispatches):
        raise PlanError("sgemm_256 and sgemm_512 differ in shape")
    factor = size / 512
    derived = Case(f"sgemm_{size}", iterations,
                   [_scaled(a, b, factor, "buffer bytes") for a, b in zip(small.buffers, large.buffers)])
    for ds, dl in zip(small.dispatches, large.dispatches):
        if ds.shader != dl.shader or len(ds.push) != len(dl.push) or ds.bindings != dl.bindings:
            raise PlanError("sgemm_256 and sgemm_512 dispatch different kernels")
        d = Dispatch(dl.shader, _scaled(ds.gx, dl.gx, factor, "groups x"), _scaled(ds.gy, dl.gy, factor, "groups y"),
                     list(dl.bindings), [_scaled(a, b, factor, f"push constant {i}") for i, (a, b) in enumerate(zip(ds.push, dl.push))])
        if d.gx > max_groups_x:
            raise PlanError(f"{d.gx} groups in x exceed the device's {max_groups_x}")
        derived.dispatches.append(d)
    return derived


def derive_scale(cases, count, buffer_bytes, iterations):
    """A scale case of `count` elements from the planned scale_4M: the direct-Vulkan peer of
    the guest's vgpubench kernel (scale(64) on a 4 KiB blob)."""
    source = by_name(cases, "scale_4M")
    if source is None or len(source.dispatches) != 1 or len(source.buffers) != 1:
        raise PlanError("the plan has no single-dispatch scale_4M case")
    old = source.buffers[0] // 4
    d = source.dispatches[0]
    if old not in d.push:
        raise PlanError("scale_4M's push constants do not carry its element count")
    push = [count if value == old else value for value in d.push]
    # Groups shrink with the elements (one per element, or a grid-stride loop: either way enough).
    gx = max(1, math.ceil(d.gx * count / old))
    return Case(f"scale_{count}", iterations, [buffer_bytes], [Dispatch(d.shader, gx, d.gy, list(d.bindings), push)])
