"""Hostile and honest checkpoints for the checkpoint reader's tests and its fuzz harness.

torch.save's format is a zip: ARCHIVE/data.pkl (the pickle) and ARCHIVE/data/KEY (one record of raw
bytes per storage, named by the pickle's persistent ids). Here pickles are assembled opcode by opcode
(Asm), so that a test says exactly what the file asks the reader to do, and zips are written with
Python's zipfile, which torch 1.13's reader accepts as its own.
"""
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile
import zlib

import torch

ARCHIVE = "archive"


class Asm:
    """A pickle written opcode by opcode; each method appends one or a few opcodes and returns self."""

    def __init__(self, proto=2):
        self.b = bytearray(pickle.PROTO + bytes([proto]))

    def op(self, code, arg=b""):
        self.b += code + arg
        return self

    def int(self, v):
        if 0 <= v < 256:
            return self.op(pickle.BININT1, bytes([v]))
        if -2**31 <= v < 2**31:
            return self.op(pickle.BININT, struct.pack("<i", v))
        raw = pickle.encode_long(v)
        if len(raw) < 256:
            return self.op(pickle.LONG1, bytes([len(raw)]) + raw)
        return self.op(pickle.LONG4, struct.pack("<i", len(raw)) + raw)

    def str(self, s):
        raw = s.encode("utf-8")
        return self.op(pickle.BINUNICODE, struct.pack("<I", len(raw)) + raw)

    def glob(self, module, name):
        return self.op(pickle.GLOBAL, f"{module}\n{name}\n".encode())

    def mark(self):
        return self.op(pickle.MARK)

    def dict(self):
        return self.op(pickle.EMPTY_DICT)

    def list(self):
        return self.op(pickle.EMPTY_LIST)

    def tuple(self, n=None):
        """TUPLE1..3 over the top n items, or TUPLE back to the mark when n is None."""
        return self.op({0: pickle.EMPTY_TUPLE, 1: pickle.TUPLE1, 2: pickle.TUPLE2, 3: pickle.TUPLE3,
                        None: pickle.TUPLE}[n])

    def put(self, i):
        return self.op(pickle.LONG_BINPUT, struct.pack("<I", i))

    def get(self, i):
        return self.op(pickle.LONG_BINGET, struct.pack("<I", i))

    def setitem(self):
        return self.op(pickle.SETITEM)

    def reduce(self):
        return self.op(pickle.REDUCE)

    def newobj(self):
        return self.op(pickle.NEWOBJ)

    def newobj_ex(self):
        return self.op(pickle.NEWOBJ_EX)

    def build(self):
        return self.op(pickle.BUILD)

    def storage(self, storage_type, key, numel):
        """A persistent id ('storage', torch.<storage_type>, key, 'cpu', numel), as torch.save writes it."""
        self.mark().str("storage").glob("torch", storage_type).str(key).str("cpu").int(numel).tuple()
        return self.op(pickle.BINPERSID)

    def tensor(self, storage_type, key, numel, offset, size, stride):
        """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
        self.glob("torch._utils", "_rebuild_tensor_v2").mark().storage(storage_type, key, numel).int(offset)
        self.mark()
        for s in size:
            self.int(s)
        self.tuple().mark()
        for s in stride:
            self.int(s)
        self.tuple().op(pickle.NEWFALSE).glob("collections", "OrderedDict").tuple(0).reduce().tuple()
        return self.reduce()

    def stop(self):
        return bytes(self.b + pickle.STOP)


def torch_zip(pkl, records=None, compress=None, sizes=None, prefix=ARCHIVE):
    """A zip in torch.save's layout: PREFIX/data.pkl, PREFIX/data/KEY for records {key: bytes}, PREFIX/version.

    compress {name: zipfile.ZIP_DEFLATED} deflates those entries (torch stores them); sizes {name: n}
    overwrites an entry's declared uncompressed size in both headers (a lie the reader must catch)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        entries = [("data.pkl", pkl)] + [(f"data/{k}", v) for k, v in (records or {}).items()] + [("version", b"3\n")]
        for name, data in entries:
            info = zipfile.ZipInfo(f"{prefix}/{name}", date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = (compress or {}).get(name, zipfile.ZIP_STORED)
            z.writestr(info, data)
    data = buf.getvalue()
    for name, n in (sizes or {}).items():
        data = set_declared_size(data, f"{prefix}/{name}", n)
    return data


def set_declared_size(data, name, n):
    """Rewrites the uncompressed size of entry name in its local header and central directory entry."""
    out = bytearray(data)
    raw = name.encode()
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = 0
        while (at := out.find(sig, at)) >= 0:
            name_at = at + (30 if sig == b"PK\x03\x04" else 46)
            if out[name_at:name_at + len(raw)] == raw:
                out[at + off:at + off + 4] = struct.pack("<I", n)
            at += 4
    return bytes(out)


def entries(data):
    """{name: bytes} of a zip (the names without the archive prefix)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename.split("/", 1)[1]: z.read(i) for i in z.infolist()}


def rezip(data, changes):
    """The zip data with entries replaced: rezip(data, {"data/0": b"..."}) ('data.pkl' too); None drops one."""
    old = entries(data)
    old.update(changes)
    pkl = old.pop("data.pkl")
    old.pop("version", None)
    records = {k[len("data/"):]: v for k, v in old.items() if k.startswith("data/") and v is not None}
    return torch_zip(pkl, records)


def saved(obj, **kwargs):
    """torch.save(obj) as bytes."""
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


@contextlib.contextmanager
def foreign_classes(*qualnames):
    """Classes that pickle as module.Name of a module nobody has (as the seed fork's do): yields them."""
    made, saved_mods = [], {}
    for q in qualnames:
        modname, name = q.rsplit(".", 1)
        parts = modname.split(".")
        for i in range(1, len(parts) + 1):  # the module and any parent package nobody has (pickle imports it)
            m = ".".join(parts[:i])
            if m not in saved_mods and (m == modname or m not in sys.modules):
                saved_mods[m] = sys.modules.get(m)
                sys.modules[m] = types.ModuleType(m)
        cls = type(name, (), {"__module__": modname, "__qualname__": name})
        setattr(sys.modules[modname], name, cls)
        made.append(cls)
    try:
        yield made
    finally:
        for k, v in saved_mods.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def module(cls, parameters=None, buffers=None, modules=None, **attrs):
    """An instance of cls that pickles like an nn.Module: its __dict__ holds _parameters, _buffers, _modules."""
    m = cls.__new__(cls)
    m.__dict__.update(training=False, _parameters=dict(parameters or {}), _buffers=dict(buffers or {}),
                      _non_persistent_buffers_set=set(), _modules=dict(modules or {}), **attrs)
    return m


def model_checkpoint(sd_modules, names=None, **extra):
    """{'ema': a foreign DetectionModel whose submodules hold sd_modules {name: {param: tensor}}, ...}."""
    with foreign_classes("ultralytics.nn.tasks.DetectionModel", "ultralytics.nn.modules.Conv") as (Det, Conv):
        subs = {k: module(Conv, parameters=v) for k, v in sd_modules.items()}
        det = module(Det, modules={"model": module(Conv, modules=subs)}, names=names)
        return saved({"epoch": -1, "ema": det, "model": None, **extra})


# ---- the files of issue #23 (findings 1, 2, 3, 10) ----

def allocator_pointer():
    """{'w': torch.UntypedStorage(16, allocator=0x414141414140)}: torch 1.13 calls through that address."""
    a = Asm(4).dict().str("w").glob("torch", "UntypedStorage").int(16).tuple(1)
    a.dict().str("allocator").int(0x414141414140).setitem().newobj_ex().setitem()
    return torch_zip(a.stop())


def frozenset_storage(n=2**32):
    """{'w': frozenset(torch.UntypedStorage(n))}: a 4 GiB storage iterated byte by byte."""
    a = Asm().dict().str("w").glob("builtins", "frozenset").glob("torch", "UntypedStorage").int(n).tuple(1)
    return torch_zip(a.reduce().tuple(1).reduce().setitem().stop())


def list_copies(n=200_000, copies=20_000):
    """{'w': [list(L)] * copies}, L of n Nones: a few hundred KB that asks for n * copies list slots."""
    a = Asm().dict().str("w").list().put(0).mark()
    for _ in range(n):
        a.op(pickle.NONE)
    a.op(pickle.APPENDS).op(pickle.POP).list().mark()
    for _ in range(copies):
        a.glob("builtins", "list").get(0).tuple(1).reduce()
    return torch_zip(a.op(pickle.APPENDS).setitem().stop())


def deflate_zeros(n, chunk=1 << 20):
    """A raw deflate stream of n zero bytes, built from one compressed chunk repeated (cheap for GiBs)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    reps, rest = divmod(n, chunk)
    tail = c.compress(bytes(rest)) + c.flush()
    return block * reps + tail


def crc32_zeros(n, chunk=1 << 24):
    crc, zeros = 0, bytes(chunk)
    while n:
        k = min(n, chunk)
        crc = zlib.crc32(zeros[:k] if k < chunk else zeros, crc)
        n -= k
    return crc


def raw_zip(members):
    """A zip of members [(name, method, crc, stored_bytes, declared_size)] written byte by byte."""
    body, central = bytearray(), bytearray()
    for name, method, crc, data, size in members:
        raw = f"{ARCHIVE}/{name}".encode()
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(data), size,
                               len(raw), 0, 0, 0, 0, 0, len(body)) + raw
        body += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0)
        body += raw + data
    n = len(members)
    return bytes(body + central + struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, n, n, len(central), len(body), 0))


def inflating_pickle(n):
    """A zip whose data.pkl is n zero bytes deflated (about n/1000 bytes in the file), headers honest."""
    return raw_zip([("data.pkl", zipfile.ZIP_DEFLATED, crc32_zeros(n), deflate_zeros(n), n),
                    ("version", zipfile.ZIP_STORED, zlib.crc32(b"3\n"), b"3\n", 2)])


def short_record(sd_zip):
    """sd_zip with its largest storage record cut to 16 bytes (headers honest: the record IS 16 bytes)."""
    recs = {k: v for k, v in entries(sd_zip).items() if k.startswith("data/")}
    big = max(recs, key=lambda k: len(recs[k]))
    return rezip(sd_zip, {big: recs[big][:16]}), big, len(recs[big])
