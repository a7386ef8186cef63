"""PyTorch's fp32 GEMM on CUDA (cuBLAS, TF32 off), the peer of GPUHost's sgemm.

Run in its own process (torch is optional and slow to import) by runner.py; prints one JSON
object on stdout: per size, TFLOP/s back to back (kernel throughput, timed with CUDA events)
and one call at a time (launch + synchronise, wall clock), or {"skipped": why}.

Usage: torch_gemm.py SIZES SECONDS_PER_SIZE      e.g. torch_gemm.py 512,2048 1.5
"""
import json
import statistics
import sys
import time


def measure(torch, n, seconds):
    a = torch.randn(n, n, device="cuda", dtype=torch.float32)
    b = torch.randn(n, n, device="cuda", dtype=torch.float32)
    c = torch.empty(n, n, device="cuda", dtype=torch.float32)
    for _ in range(5):
        torch.matmul(a, b, out=c)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.matmul(a, b, out=c)
    end.record()
    end.synchronize()
    once_ms = max(start.elapsed_time(end), 1e-3)
    # Five timed runs of back-to-back calls filling about `seconds` together.
    per_run = max(3, min(20000, int(seconds / 5 * 1000 / once_ms)))
    back_to_back = []
    for _ in range(5):
        start.record()
        for _ in range(per_run):
            torch.matmul(a, b, out=c)
        end.record()
        end.synchronize()
        back_to_back.append(start.elapsed_time(end) / per_run / 1000)
    synchronous = []
    for _ in range(max(5, min(200, per_run))):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        synchronous.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    kernel_s, call_s = statistics.median(back_to_back), statistics.median(synchronous)
    return {"size": n, "calls_per_run": per_run, "kernel_seconds": kernel_s, "sync_call_seconds": call_s,
            "tflops_back_to_back": flops / kernel_s / 1e12, "tflops_sync_call": flops / call_s / 1e12}


def main():
    sizes = [int(s) for s in sys.argv[1].split(",")] if len(sys.argv) > 1 else [512, 2048]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 1.5
    try:
        import torch
    except ImportError as error:
        print(json.dumps({"skipped": f"torch is not importable ({error})"}))
        return
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "torch sees no CUDA device", "torch": torch.__version__}))
        return
    # Plain fp32 on both sides: TF32 would compare a different arithmetic.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    report = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0),
              "allow_tf32": torch.backends.cuda.matmul.allow_tf32, "sizes": {}}
    for n in sizes:
        report["sizes"][str(n)] = measure(torch, n, seconds)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
