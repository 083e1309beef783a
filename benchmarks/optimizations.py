"""Each kept optimization of the model code, before and after, timed in one run.

    python benchmarks/optimizations.py [--model NAME|FILE] [--size 256] [--repeat 7]
        [--threads N] [--device cpu|cuda] [--only NAME,NAME]

For every optimization the "before" is the straightforward implementation it replaced,
defined in this file and swapped in for the timing only; the "after" is the code in
restore/. Before and after calls alternate (ABAB...), so a machine whose load drifts
(a shared CPU) hurts both alike; the median of --repeat calls of each is reported, with
the max abs difference of the outputs (the optimization must not change them beyond
rounding). All in fp32 under torch.inference_mode, whole image, on a (1, C, S, S) input.

Optimizations:
    attention-fused   one scaled_dot_product_attention per window batch vs the reference's
                      explicit q@k^T + bias + mask, softmax, @v
    shift-mask-seam   the shift mask applied only to the windows on the cyclic shift's seam
                      (second SDPA call) vs one SDPA call with a (nW, nH, N, N) mask
    iln-stats-two-pass  i-LN statistics as mean, then mean square deviation, vs torch.var_mean
    iln-one-pass      i-LN as x * a + b (one addcmul) vs (x - mean) / std * gamma + beta
    residual-addcmul  x + y * std in one addcmul vs x + (y * std)
    inference-mode    torch.inference_mode vs torch.no_grad
    channels-last     the engine's NHWC model and input (restore.engine.Restorer) vs NCHW

Candidates (--candidates; "before" is the code in restore/, "after" the candidate, which
restore/ adopts only where this shows it pays on the device at hand):
    compile           torch.compile(model) (inductor); compile time printed separately
    bf16-autocast     torch.autocast bf16 (a precision change: the diff column is its error)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from restore.archs import common  # noqa: E402
from restore import norms  # noqa: E402
from restore.norms import ILN, ILNStats  # noqa: E402


# -- the "before" implementations ----------------------------------------------------------

def attention_full_mask(q, k, v, bias, mask, scale, attn_drop, fused=True):
    """SDPA with the bias plus the shift mask of every window as one (nW, nH, N, N) mask."""
    if not fused:
        return _current_attention(q, k, v, bias, mask, scale, attn_drop, fused)
    bnw, nh, nq = q.shape[0], q.shape[1], q.shape[2]
    m = bias.to(q.dtype).unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        m = m + mask.to(q.dtype).unsqueeze(1)
        if bnw != nw:
            q, k, v = (t.reshape(bnw // nw, nw, nh, t.shape[2], t.shape[3]) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=scale)
    return out.reshape(bnw, nh, nq, out.shape[-1])


def iln_stats_var_mean(x, eps):
    dims = tuple(range(1, x.dim()))
    var, mean = torch.var_mean(x.float(), dim=dims, correction=0, keepdim=True)
    return ILNStats(mean=mean, std=torch.sqrt(var + eps))


def iln_normalize_four_pass(self, x, stats=None):
    if stats is None:
        stats = self.statistics(x)
    y = (x.float() - stats.mean) / stats.std
    y = y * self.gamma.float() + self.beta.float()
    return y.to(x.dtype), stats


def iln_residual_two_pass(self, x, y, stats):
    return x + self.denorm(y, stats)


_current_attention = common.windowed_attention


@contextlib.contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def load(spec: str):
    """A checkpoint file, a registry name, or a benchmark name of throughput.py
    (swinir-s-iln, hat-mini-ln, ...: random weights, seed 0)."""
    from restore.checkpoint import load_model

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import throughput

    arch, _, norm = spec.rpartition("-")
    if arch in throughput.ARCHS and norm in throughput.NORMS:
        return throughput.load(spec)
    if spec.endswith(".safetensors") or Path(spec).is_file():
        return load_model(spec)
    from restore.registry import load_registry_model

    return load_registry_model(spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="restore/models/swinir-iln-t.sr-x4.safetensors")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="", help="comma-separated optimization names")
    ap.add_argument("--candidates", action="store_true",
                    help="time the candidates (not in restore/) instead of the kept ones")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = load(args.model).eval().to(device).to(memory_format=torch.channels_last)
    x = torch.rand(1, getattr(model, "in_chans", 3), args.size, args.size, device=device)
    x_nchw, x = x, x.contiguous(memory_format=torch.channels_last)  # as the engine runs it
    print(f"model {args.model}, input {args.size}x{args.size}, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeat}", file=sys.stderr)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    inp = {"x": x}

    def run(ctx_factory, mode=torch.inference_mode):
        with ctx_factory(), mode():
            t = time.perf_counter()
            y = model(inp["x"])
            sync()
            return time.perf_counter() - t, y

    def nothing():
        return contextlib.nullcontext()

    variants = {
        "attention-fused": (lambda: _fused(model, False), lambda: _fused(model, True)),
        "shift-mask-seam": (lambda: patched(common, "windowed_attention", attention_full_mask),
                            nothing),
        "iln-stats-two-pass": (lambda: patched(norms, "iln_stats", iln_stats_var_mean),
                               nothing),
        "iln-one-pass": (lambda: patched(ILN, "normalize", iln_normalize_four_pass), nothing),
        "residual-addcmul": (lambda: patched(ILN, "residual", iln_residual_two_pass), nothing),
        "channels-last": (lambda: _nchw(model, inp, x_nchw), nothing),
    }
    only = set(filter(None, args.only.split(",")))
    rows = []

    def ab(name, before, after):
        """Warm up, then alternate the two calls; a row of medians and the output diff."""
        before(), after()  # warm-up (and compilation)
        tb, ta = [], []
        for _ in range(args.repeat):
            t, yb = before()
            tb.append(t)
            t, ya = after()
            ta.append(t)
        rows.append((name, statistics.median(tb), statistics.median(ta),
                     float((yb.float() - ya.float()).abs().max())))
        print(f"  {name} done", file=sys.stderr)

    if args.candidates:
        variants = {}  # the kept ones are not re-timed
        for name, make in candidates(model, x, sync).items():
            if not only or name in only:
                ab(name, *make())
    for name, (before, after) in variants.items():
        if not only or name in only:
            ab(name, lambda b=before: run(b), lambda a=after: run(a))
    if not args.candidates and (not only or "inference-mode" in only):
        tb, ta = [], []
        for _ in range(args.repeat):
            tb.append(run(nothing, torch.no_grad)[0])
            ta.append(run(nothing)[0])
        rows.append(("inference-mode", statistics.median(tb), statistics.median(ta), 0.0))

    print("| optimization | before (s) | after (s) | speed-up | max abs diff |")
    print("|---|---|---|---|---|")
    for name, b, a, d in rows:
        print(f"| {name} | {b:.3f} | {a:.3f} | {b / a:.2f}x | {d:.1e} |")


def candidates(model, x, sync):
    """name -> a factory of (current, candidate): callables returning (seconds, output)."""
    def timed(fn, inp):
        def call():
            with torch.inference_mode():
                t = time.perf_counter()
                y = fn(inp)
                sync()
                return time.perf_counter() - t, y
        return call

    current = timed(model, x)

    def compiled():
        fn = torch.compile(model)
        t = time.perf_counter()
        with torch.inference_mode():
            fn(x)
        sync()
        print(f"  compile: first call (compilation) {time.perf_counter() - t:.1f} s",
              file=sys.stderr)
        return current, timed(fn, x)

    def bf16():
        def run(inp):
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return model(inp)
        return current, timed(run, x)

    return {"compile": compiled, "bf16-autocast": bf16}


@contextlib.contextmanager
def _nchw(model, inp, x_nchw):
    x = inp["x"]
    model.to(memory_format=torch.contiguous_format)
    inp["x"] = x_nchw
    try:
        yield
    finally:
        model.to(memory_format=torch.channels_last)
        inp["x"] = x


@contextlib.contextmanager
def _fused(model, on: bool):
    common.set_fused_attention(model, on)
    try:
        yield
    finally:
        common.set_fused_attention(model, True)


if __name__ == "__main__":
    main()
