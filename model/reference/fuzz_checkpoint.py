"""Fuzzes the checkpoint reader (model.reference.checkpoint) for a fixed time.

    /usr/bin/python3 -m model.reference.fuzz_checkpoint --seconds 20            # what `make test-reference` runs
    nice /usr/bin/python3 -m model.reference.fuzz_checkpoint --seconds 1200 --seed 0 --save build/fuzz

Inputs are mutations of real small checkpoints -- a tiny-architecture state_dict (fp32, fp16 with names),
the tiny model and a few of its modules pickled as module objects the way the seed fork saves them, a
file of strided views -- and of issue #23's hostile files, plus pickles generated opcode by opcode.
Mutations act on the pickle (bytes, opcode arguments, whole opcodes, spliced snippets), on the storage
records (cut, grown, dropped, garbage) and on the zip (bytes, declared sizes, deflate, duplicate entries).

Each input is read in a forked child under RLIMIT_AS, with a deadline; a read that succeeds has every
tensor's bytes touched and is checked against and loaded into the tiny model, as model.reference.export
would. Counted as failures: a crash (signal or abnormal exit), a hang (more than --timeout seconds of
CPU, RLIMIT_CPU, or ten times that on the clock, for a read that blocks), an error other
than a one-line CheckpointError naming the file (or one saying "internal error" or "does not fit in
memory"), and a peak RSS of --max-rss-mb or more (wait4's ru_maxrss of the child, which counts the pages
it still shares with this process: PyTorch and the tiny model).
The summary goes to stderr (JSON on stdout with --json); failing inputs are written to --save; exit 1
when there was any.
"""
import argparse
import hashlib
import io
import json
import os
import pathlib
import pickle
import pickletools
import random
import resource
import select
import signal
import struct
import sys
import tempfile
import time
import warnings
import zipfile

import numpy as np
import torch

from . import checkpoint, seed
from .tests import craft

INTERESTING = [0, 1, 2, 3, 7, 255, 256, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1,
               2**63, 2**64, -1, -2, -2**31, -2**63, 10**30]
GLOBALS = [("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
           ("torch._utils", "_rebuild_parameter"), ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Size"),
           ("torch", "FloatStorage"), ("torch", "HalfStorage"), ("torch", "BoolStorage"), ("torch", "UntypedStorage"),
           ("torch", "LongStorage"), ("torch", "Tensor"), ("torch", "device"), ("collections", "OrderedDict"),
           ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "list"), ("builtins", "dict"),
           ("builtins", "tuple"), ("__builtin__", "set"), ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"),
           ("builtins", "object"), ("posix", "system"), ("builtins", "eval"), ("builtins", "getattr"),
           ("ultralytics.nn.tasks", "DetectionModel"), ("numpy.core.multiarray", "scalar")]
STRINGS = ["storage", "cpu", "0", "1", "w", "model", "ema", "names", "_parameters", "_buffers", "_modules",
           "weight", "state_dict", "allocator", "", "x" * 300]


# ---- the inputs ----

def bases():
    """{name: bytes} of the honest and hostile files that mutations start from."""
    torch.manual_seed(0)
    model = seed.build(2, "tiny", 0)
    sd = model.state_dict()
    x = torch.arange(24.0).reshape(4, 6)
    out = {
        "state_dict": craft.saved(sd),
        "fp16_names": craft.saved({"model": {k: v.half() for k, v in list(sd.items())[:40]},
                                   "names": {0: "person", 1: "car"}}, pickle_protocol=4),
        "views": craft.saved({"x": x, "t": x.t(), "corner": x[1:, 2:], "empty": torch.zeros(0, 3),
                              "scalar": torch.tensor(2.0, dtype=torch.float64), "mask": torch.tensor([True, False]),
                              "n": torch.tensor(3)}),
        "modules": craft.saved({"epoch": 3, "ema": model.model[0].half(), "model": None,
                                "best_fitness": np.float64(0.5), "names": {0: "person"},
                                "train_args": {"save_dir": pathlib.Path("/runs/x"), "imgsz": 128}}),
        "model": craft.saved({"ema": model.half(), "model": None}),
        "allocator": craft.allocator_pointer(),
        "frozenset_storage": craft.frozenset_storage(),
        "list_copies": craft.list_copies(2000, 2000),
        "short_record": craft.short_record(craft.saved(sd))[0],
    }
    return out


def op_spans(pkl):
    """[(start, end, opcode name)] of each opcode of a pickle."""
    ops = [(pos, op.name) for op, _, pos in pickletools.genops(pkl)]
    return [(p, ops[i + 1][0] if i + 1 < len(ops) else len(pkl), name) for i, (p, name) in enumerate(ops)]


def encode_int(v):
    return bytes(craft.Asm().int(v).b[2:])


def snippet(rng, records):
    """A few opcodes, as bytes, for the generator and for splicing into real pickles."""
    a = craft.Asm()
    a.b.clear()
    kind = rng.randrange(17)
    if kind == 0:
        a.int(rng.choice(INTERESTING))
    elif kind == 1:
        a.str(rng.choice(STRINGS))
    elif kind == 2:
        a.glob(*rng.choice(GLOBALS))
    elif kind == 3:
        a.mark()
    elif kind == 4:
        a.op(rng.choice([pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.EMPTY_TUPLE]))
    elif kind == 5:
        a.op(rng.choice([pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.EMPTY_SET, pickle.APPEND, pickle.APPENDS,
                         pickle.SETITEM, pickle.SETITEMS, pickle.ADDITEMS, pickle.FROZENSET, pickle.LIST, pickle.DICT]))
    elif kind == 6:
        a.op(rng.choice([pickle.REDUCE, pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.BUILD, pickle.OBJ]))
    elif kind == 7:
        a.op(rng.choice([pickle.DUP, pickle.POP, pickle.POP_MARK, pickle.NONE, pickle.NEWTRUE, pickle.MEMOIZE]))
    elif kind == 8:
        a.put(rng.randrange(4))
    elif kind == 9:
        a.get(rng.randrange(4))
    elif kind == 10 and records:
        key, n = rng.choice(records)
        a.storage(rng.choice(["FloatStorage", "ByteStorage", "HalfStorage", "BoolStorage"]), key,
                  rng.choice([n // 4, n, n // 2, 0, rng.choice(INTERESTING) & (2**62 - 1)]))
    elif kind == 11 and records:
        key, n = rng.choice(records)
        numel = n // 4
        dims = rng.randrange(0, 4)
        size = tuple(rng.choice([0, 1, 2, 3, numel, rng.choice(INTERESTING)]) for _ in range(dims))
        stride = tuple(rng.choice([0, 1, 2, numel, rng.choice(INTERESTING)]) for _ in range(dims))
        a.tensor("FloatStorage", key, numel, rng.choice([0, 1, numel, rng.choice(INTERESTING)]),
                 tuple(abs(s) for s in size), tuple(abs(s) for s in stride))
    elif kind == 12:
        a.op(pickle.BINPERSID)
    elif kind == 13:
        a.op(pickle.LONG4, struct.pack("<i", rng.choice([5, 1024, 1025, 2**20, -1])) + bytes(5))
    elif kind == 14:
        a.op(rng.choice([pickle.INT, pickle.LONG, pickle.FLOAT, pickle.PUT, pickle.GET]),
             rng.choice([b"1\n", b"01\n", b"9" * 70 + b"\n", b"x\n", b"-5\n", b"nan\n"]))
    elif kind == 15:
        a.op(rng.choice([pickle.STACK_GLOBAL, pickle.BINPERSID, pickle.FRAME + bytes(8), pickle.EXT1 + b"\x01",
                         pickle.BYTEARRAY8 + struct.pack("<Q", 3) + b"abc"]))
    else:  # one value nested deep (C code that recurses into it -- hash, repr -- would overflow the stack)
        depth = rng.choice([100, 10_000, 200_000])
        a.op(rng.choice([pickle.NONE + pickle.TUPLE1 * depth, (pickle.MARK + pickle.EMPTY_LIST) * depth
                         + pickle.LIST * depth, (pickle.MARK * depth) + pickle.FROZENSET * depth,
                         pickle.EMPTY_DICT * depth + (pickle.NONE + pickle.SETITEM) * (depth - 1)]))
    return bytes(a.b)


def generated(rng):
    """A pickle of 1-80 random snippets, in a zip with two storage records."""
    records = {"0": bytes(range(64)), "1": b"\x01" * 8}
    a = craft.Asm(rng.choice([2, 4]))
    for _ in range(rng.randrange(1, 80)):
        a.b += snippet(rng, [(k, len(v)) for k, v in records.items()])
    return craft.torch_zip(a.stop(), records)


def random_tensor(rng):
    dtype = rng.choice([torch.float32, torch.float16, torch.int64, torch.bool, torch.bfloat16, torch.float64])
    shape = [rng.randrange(0, 5) for _ in range(rng.randrange(0, 4))]
    t = (torch.rand(shape) * 10).to(dtype)
    if t.dim() >= 2 and rng.random() < 0.3:
        t = t.transpose(0, 1)
    if t.dim() >= 1 and t.shape[0] > 1 and rng.random() < 0.3:
        t = t[1:]
    return t


def structured(rng):
    """A checkpoint of module objects (foreign classes, as the fork's) with random tensors, views, names and
    structure -- shared and cyclic submodules, non-tensor parameters, odd names -- pickled by torch.save."""
    with craft.foreign_classes("ultralytics.nn.tasks.DetectionModel", "ultralytics.nn.modules.Conv") as (Det, Conv):
        mods = []
        for i in range(rng.randrange(1, 12)):
            params = {f"p{j}": random_tensor(rng) for j in range(rng.randrange(0, 4))}
            if rng.random() < 0.05:
                params["bad"] = rng.choice([5, "w", None, [torch.ones(1)], Conv])
            m = craft.module(Conv, parameters=params, buffers={"b": random_tensor(rng)} if rng.random() < 0.3 else {})
            if mods and rng.random() < 0.7:
                parent = rng.choice(mods)
                parent._modules[rng.choice([str(i), f"m{i}", "", "a.b"])] = m
            mods.append(m)
        if rng.random() < 0.05:
            rng.choice(mods)._modules["loop"] = rng.choice(mods)
        if rng.random() < 0.1 and len(mods) > 1:
            rng.choice(mods)._modules["shared"] = rng.choice(mods)
        names = rng.choice([None, {0: "person", 1: "car"}, ["a", "b"], {"0": "x"}, {0: 1}, {-1: "x"}, {0: "a\nb"},
                            {2**70: "x"}, ("a",), "person", {0: Conv}])
        det = craft.module(Det, modules={"model": mods[0]}, names=names, yaml={"nc": rng.choice([2, "2", None])})
        top = rng.choice([{"ema": det, "model": None, "epoch": rng.choice([1, "x", 2**70])}, {"model": det},
                          {"model": {f"k{i}": random_tensor(rng) for i in range(rng.randrange(0, 5))}}, det, [det]])
        return craft.saved(top, pickle_protocol=rng.choice([2, 4, 5]))


def mutate_pickle(rng, pkl, records, donors):
    b = bytearray(pkl)
    if not b:
        return bytes(snippet(rng, []))
    kind = rng.randrange(9)
    try:
        spans = op_spans(pkl)
    except Exception:  # noqa: BLE001 - an earlier mutation broke it; mutate bytes instead
        spans, kind = None, rng.choice([0, 1, 8])
    if kind == 0:  # bit flips
        for _ in range(rng.randrange(1, 9)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # interesting bytes
        for _ in range(rng.randrange(1, 5)):
            b[rng.randrange(len(b))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, ord("("), ord("."), ord("R")])
    elif kind == 2:  # an integer argument set to a boundary value
        ints = [s for s in spans if s[2] in ("BININT", "BININT1", "BININT2", "LONG1", "BINPUT", "LONG_BINPUT",
                                             "BINGET", "LONG_BINGET")]
        if ints:
            start, end, _ = rng.choice(ints)
            b[start:end] = encode_int(rng.choice(INTERESTING))
    elif kind == 3:  # a length field
        lens = [s for s in spans if s[2] in ("BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES",
                                             "BINUNICODE8", "FRAME")]
        if lens:
            start, end, name = rng.choice(lens)
            width = {"SHORT_BINUNICODE": 1, "SHORT_BINBYTES": 1, "BINUNICODE8": 8, "FRAME": 8}.get(name, 4)
            v = rng.choice(INTERESTING) % (1 << (8 * width))
            b[start + 1:start + 1 + width] = v.to_bytes(width, "little")
    elif kind == 4:  # drop an opcode
        start, end, _ = rng.choice(spans)
        del b[start:end]
    elif kind == 5:  # duplicate or move an opcode
        start, end, _ = rng.choice(spans)
        at = rng.choice(spans)[0]
        b[at:at] = pkl[start:end]
    elif kind == 6:  # splice generated opcodes at an opcode boundary
        at = rng.choice(spans)[0]
        recs = [(k[5:], len(v)) for k, v in records.items() if k.startswith("data/")]
        b[at:at] = b"".join(snippet(rng, recs) for _ in range(rng.randrange(1, 6)))
    elif kind == 7:  # a span of another checkpoint's pickle
        donor = rng.choice(donors)
        i = rng.randrange(len(donor))
        at = rng.choice(spans)[0]
        b[at:at] = donor[i:i + rng.randrange(1, 200)]
    else:  # cut
        del b[rng.randrange(len(b)):]
    return bytes(b)


def mutate(rng, data, donors):
    """One to three mutations of a torch.save zip."""
    for _ in range(rng.randrange(1, 4)):
        try:
            recs = craft.entries(data)
        except Exception:  # noqa: BLE001 - the zip itself is already broken: keep mutating its bytes
            recs = None
        if not data:
            return data
        kind = rng.choices(range(9), weights=[60, 0, 0, 0, 10, 8, 7, 10, 5])[0] if recs and "data.pkl" in recs \
            else rng.choice([7, 8])
        if kind <= 3:
            recs["data.pkl"] = mutate_pickle(rng, recs["data.pkl"], recs, donors)
            data = rebuild(recs)
        elif kind == 4:  # a storage record cut, grown, dropped or garbage
            keys = [k for k in recs if k.startswith("data/")]
            if keys:
                k = rng.choice(keys)
                v = recs[k]
                recs[k] = rng.choice([v[:rng.randrange(len(v) + 1)], v + bytes(rng.randrange(1, 64)), None,
                                      bytes(rng.getrandbits(8) for _ in range(len(v))), b""])
                data = rebuild(recs)
        elif kind == 5:  # a declared size in the zip's headers
            names = [f"{craft.ARCHIVE}/{k}" for k in recs]
            data = craft.set_declared_size(data, rng.choice(names), rng.choice(INTERESTING) % 2**32)
        elif kind == 6:  # deflate every entry, or a duplicate entry with other bytes
            if rng.random() < 0.5:
                pkl = recs.pop("data.pkl")
                recs.pop("version", None)
                data = craft.torch_zip(pkl, {k[5:]: v for k, v in recs.items() if k.startswith("data/")},
                                       compress={k: zipfile.ZIP_DEFLATED for k in ["data.pkl", *recs]})
            else:
                buf = io.BytesIO(data)
                with zipfile.ZipFile(buf, "a") as z, warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "Duplicate name": the point
                    name = rng.choice(list(recs))
                    z.writestr(f"{craft.ARCHIVE}/{name}", bytes(rng.randrange(0, 300)))
                data = buf.getvalue()
        elif kind == 7:  # raw bytes of the file
            b = bytearray(data)
            for _ in range(rng.randrange(1, 9)):
                b[rng.randrange(len(b))] = rng.getrandbits(8)
            data = bytes(b)
        else:  # cut the file
            data = data[:rng.randrange(len(data))]
    return data


def rebuild(recs):
    recs = dict(recs)
    pkl = recs.pop("data.pkl")
    recs.pop("version", None)
    return craft.torch_zip(pkl, {k[5:]: v for k, v in recs.items() if k.startswith("data/") and v is not None})


# ---- one input in a sandbox ----

def check(path, model):
    """What the child does: read, touch every tensor, check against and load into the tiny model (as
    model.reference.export does). A refusal by check_keys still counts as a read that was accepted."""
    outcome = "refused"
    try:
        sd, names, info = checkpoint.read(path)
        outcome = "accepted"
        for k, v in sd.items():
            if not isinstance(v, torch.Tensor):
                return "unexpected", f"read() gave {k} = {type(v).__name__}"
            # A copy with fresh strides: contiguous() keeps a size-1 dimension's stride, which may be anything
            # (a (1, 1) tensor with strides (1, 2) is contiguous), and view() then refuses to reinterpret it.
            int(torch.empty(v.shape, dtype=v.dtype).copy_(v).reshape(-1).view(torch.uint8).sum())
        if names is not None and not all(type(i) is int and type(n) is str for i, n in names.items()):
            return "unexpected", "names are not {int: str}"
        checkpoint.check_keys(path, model.state_dict(), sd, "the tiny model")
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        return outcome, info["class"]
    except checkpoint.CheckpointError as e:
        msg = str(e)
        if "\n" in msg or not msg.startswith(f"checkpoint {path}") or "internal error" in msg:
            return "unexpected", msg
        if "does not fit in memory" in msg:
            return "memory", msg
        return outcome, msg
    except BaseException as e:  # noqa: BLE001 - exactly what the harness looks for
        return "unexpected", f"{type(e).__name__}: {e}"


def run_one(path, model, timeout, mem_bytes):
    """(outcome, detail, peak RSS MB, seconds) of reading path in a forked child.

    A hang is timeout seconds of CPU (RLIMIT_CPU: SIGXCPU), so that a loaded machine does not make a slow
    read one; a read that blocks without using CPU is killed at ten times that on the clock."""
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: limits, the read, one line back, _exit
        try:
            os.close(r)
            resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
            cpu = max(1, int(timeout))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
            outcome, detail = check(path, model)
            os.write(w, json.dumps([outcome, detail[:2000]]).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks, killed = [], False
    deadline = t0 + 10 * timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            killed = True
            break
        ready, _, _ = select.select([r], [], [], left)
        if ready:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(r)
    _, status, usage = os.wait4(pid, 0)
    secs = time.monotonic() - t0
    rss = usage.ru_maxrss / 1024
    if killed:
        return "hang", f"still running after {10 * timeout:.0f}s on the clock", rss, secs
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
        return "hang", f"more than {timeout:.0f}s of CPU (signal {os.WTERMSIG(status)})", rss, secs
    if os.WIFSIGNALED(status):
        return "crash", f"killed by signal {os.WTERMSIG(status)}", rss, secs
    try:
        outcome, detail = json.loads(b"".join(chunks))
    except ValueError:
        return "crash", f"exit status {os.waitstatus_to_exitcode(status)} without a result", rss, secs
    return outcome, detail, rss, secs


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.reference.fuzz_checkpoint", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20, help="how long to run")
    p.add_argument("--seed", type=int, default=0, help="random seed of the mutations")
    p.add_argument("--timeout", type=float, default=10, help="CPU seconds one read may take before it counts as a hang")
    p.add_argument("--max-rss-mb", type=float, default=512, help="peak RSS of a read that counts as a failure")
    p.add_argument("--mem-limit-mb", type=int, default=0,
                   help="RLIMIT_AS of each child (default: this process's address space + 1 GiB)")
    p.add_argument("--save", default="", help="folder for the failing inputs")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # children are forked: no OpenMP pool in the parent
    rng = random.Random(a.seed)
    base = bases()
    names = sorted(base)
    donors = [craft.entries(base[n])["data.pkl"] for n in names]
    model = seed.RTDETRStarNetFreqFusion(2, seed.TINY).eval()
    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    mem = a.mem_limit_mb * (1 << 20) if a.mem_limit_mb else vm + (1 << 30)
    counts = {k: 0 for k in ("accepted", "refused", "crash", "hang", "unexpected", "memory", "rss")}
    failures, peak, slowest, n = [], 0.0, 0.0, 0
    t_end = time.monotonic() + a.seconds
    with tempfile.TemporaryDirectory(prefix="stardetr-fuzz-") as tmp:
        path = os.path.join(tmp, "input.pt")
        while n < len(names) or time.monotonic() < t_end:  # every base at least once, however loaded the machine
            if n < len(names):
                src, data = names[n], base[names[n]]  # every base once, as it is
            elif rng.random() < 0.15:
                src, data = "generated", generated(rng)
            elif rng.random() < 0.2:
                src, data = "structured", structured(rng)
                if rng.random() < 0.5:
                    data = mutate(rng, data, donors)
            else:
                src = rng.choice(names)
                data = mutate(rng, base[src], donors)
            with open(path, "wb") as f:
                f.write(data)
            outcome, detail, rss, secs = run_one(path, model, a.timeout, mem)
            n += 1
            peak, slowest = max(peak, rss), max(slowest, secs)
            if rss >= a.max_rss_mb and outcome in ("accepted", "refused"):
                outcome, detail = "rss", f"peak RSS {rss:.0f} MB"
            counts[outcome] += 1
            if outcome not in ("accepted", "refused"):
                digest = hashlib.sha256(data).hexdigest()[:16]
                failures.append({"outcome": outcome, "detail": detail, "from": src, "sha256": digest})
                print(f"fuzz: {outcome}: {src} input {digest}: {detail}", file=sys.stderr, flush=True)
                if a.save:
                    os.makedirs(a.save, exist_ok=True)
                    pathlib.Path(a.save, f"{outcome}-{digest}.pt").write_bytes(data)
    summary = {"inputs": n, "bases": len(names), "seconds": a.seconds, "seed": a.seed, "accepted": counts["accepted"],
               "refused": counts["refused"], "crashes": counts["crash"], "hangs": counts["hang"],
               "unexpected": counts["unexpected"] + counts["memory"], "over_rss": counts["rss"],
               "peak_rss_mb": round(peak, 1), "slowest_s": round(slowest, 2), "failures": failures[:20]}
    print(f"fuzz: {n} inputs in {a.seconds:.0f}s (seed {a.seed}): {counts['accepted']} accepted, "
          f"{counts['refused']} refused, {counts['crash']} crashes, {counts['hang']} hangs, "
          f"{summary['unexpected']} unexpected errors, {counts['rss']} over {a.max_rss_mb:.0f} MB; "
          f"peak RSS {peak:.0f} MB, slowest read {slowest:.2f}s", file=sys.stderr)
    if a.json:
        print(json.dumps(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
