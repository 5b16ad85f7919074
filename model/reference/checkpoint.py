"""Reads checkpoints of the seed model from anywhere (the seed's fork, stock ultralytics, this project) safely.

A checkpoint is untrusted bytes: torch.save's zip holds ARCHIVE/data.pkl (a pickle) and ARCHIVE/data/KEY
(the raw bytes of one storage each, named by the pickle's persistent ids). This reader runs nothing the
file names and calls no library constructor with arguments the file chose (torch.load and pickle would:
torch 1.13's UntypedStorage(n, allocator=<int>) calls through that integer):

- The zip is read with Python's zipfile, only the records the pickle names. A record must be exactly as
  long as its storage declares (element count x element size) -- checked on the zip's header before a
  buffer is allocated, and on the bytes read -- and the bytes inflated from one file are capped at
  min(4 x its size, 2 GiB), data.pkl at 16 MiB; zipfile never inflates past a header's size.
- The pickle runs in the reader's own interpreter (_Unpickler), not pickle's. A global the pickle names
  is a Global marker; nothing is imported. Calling one (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ) runs the
  reader's own code for the few that matter -- torch's tensor and parameter rebuild functions,
  torch.Size, the plain containers -- and for any other global (the fork's ultralytics.nn.AddModules.*
  classes, torch.UntypedStorage, os.system) makes an inert Instance that only records the arguments
  and state it was given. A tensor is a view (Tensor.as_strided) the reader makes of a buffer it read
  from the zip, once its shape, stride and offset are checked to lie inside the buffer and it has no
  more elements than the buffer.
- Sizes are bounded: every opcode consumes at least one byte of a pickle of at most 16 MiB; the values
  the pickle builds are charged an estimate of their memory (at most 128 MiB; a seed checkpoint's take
  ~5 MiB), container copies included; integers are at most 1 KiB; dict keys and set items are atoms or
  flat tuples, so hashing never recurses; nothing walks the result recursively, and the module tree is
  walked with a cycle check and caps on depth, modules and entries.

Every malformed structure is one CheckpointError naming the file and what is wrong. From a module
object (an Instance with _parameters, _buffers, _modules in its state) the state_dict is collected
exactly as nn.Module.state_dict would. model.reference loads the weights into its own model, and
model.ultralytics into the one stock ultralytics builds; both refuse a checkpoint of another
architecture or class count with one error listing the missing, unexpected and mis-shaped keys
(check_keys). model/reference/fuzz_checkpoint.py fuzzes this reader.
"""
import _compat_pickle
import codecs
import collections
import pickle  # its opcode constants; pickle.Unpickler is never used
import re
import struct
import zipfile
from pathlib import Path

import torch

MiB, GiB = 1 << 20, 1 << 30
MAX_INFLATE = 2 * GiB  # bytes inflated from one checkpoint, and at most INFLATE_FACTOR x its size
INFLATE_FACTOR = 4
MAX_PICKLE = 16 * MiB  # data.pkl (a seed checkpoint's is ~0.2 MB)
MAX_OBJECT_BYTES = 128 * MiB  # what the pickle's values may take, by _Unpickler.push's estimate (seed: ~5 MiB)
MAX_ENTRIES = 100_000  # zip entries (one per storage; a seed checkpoint has ~1,000)
MAX_INT_BYTES = 1024  # LONG1/LONG4 integers (a checkpoint's integers fit in 8 bytes)
MAX_TEXT_NUMBER = 64  # the text opcodes INT, LONG, FLOAT, PUT, GET
MAX_DIMS = 32
MAX_KEY_TUPLE = 64  # items of a tuple used as a dict key or set item
MAX_MODULE_DEPTH = 100
MAX_MODULES = 100_000  # modules visited (a shared submodule once per path, as nn.Module.state_dict does)
MAX_WALK = 1_000_000  # _parameters, _buffers and _modules entries looked at while visiting them
MAX_KEYS = 100_000  # state_dict entries (the seed's: 642)
MAX_KEY_CHARS = 1024
MAX_NAMES = 100_000  # class names, ids 0..MAX_NAMES-1
MAX_NAME_CHARS = 1000
_INDEX = 1 << 62  # offsets, sizes, strides and element counts beyond this are refused

# Storage types a persistent id may name -> (dtype, bytes per element).
_STORAGES = {
    "DoubleStorage": (torch.float64, 8), "FloatStorage": (torch.float32, 4), "HalfStorage": (torch.float16, 2),
    "BFloat16Storage": (torch.bfloat16, 2), "LongStorage": (torch.int64, 8), "IntStorage": (torch.int32, 4),
    "ShortStorage": (torch.int16, 2), "CharStorage": (torch.int8, 1), "ByteStorage": (torch.uint8, 1),
    "BoolStorage": (torch.bool, 1), "ComplexDoubleStorage": (torch.complex128, 16),
    "ComplexFloatStorage": (torch.complex64, 8), "UntypedStorage": (torch.uint8, 1),
}
_GLOBAL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,199}\Z")
_RECORD_KEY = re.compile(r"[A-Za-z0-9_]{1,64}\Z")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


class Global:
    """A global the pickle names (module.name); never imported, only compared by name."""

    __slots__ = ("module", "name")

    def __init__(self, module, name):
        self.module, self.name = module, name

    @property
    def qualname(self):
        return f"{self.module}.{self.name}"

    def __repr__(self):
        return self.qualname


class Instance:
    """Inert stand-in for an object of a class the reader does not build (a module of the fork, ...).

    It records what the pickle gives it -- constructor arguments, state, items -- as data, and runs nothing.
    """

    __slots__ = ("of", "args", "kwargs", "state", "listitems", "dictitems")

    def __init__(self, of, args=(), kwargs=None):
        self.of, self.args, self.kwargs = of, args, kwargs
        self.state = self.listitems = self.dictitems = None

    @property
    def stub_of(self):
        return self.of.qualname

    def attrs(self):
        """The object's __dict__ as the pickle set it (BUILD state, maybe with slot state as a pair), or {}."""
        st = self.state
        if isinstance(st, tuple) and len(st) == 2 and isinstance(st[0], dict):
            st = st[0]
        return st if isinstance(st, dict) else {}

    def __repr__(self):
        return self.stub_of + "(...)"


class _Storage:
    """A storage the pickle named by persistent id, with the record's bytes as a 1-D tensor."""

    __slots__ = ("key", "dtype", "numel", "tensor")

    def __init__(self, key, dtype, numel, tensor):
        self.key, self.dtype, self.numel, self.tensor = key, dtype, numel, tensor


def describe(v):
    """A short one-line description of a value from the pickle (never its full repr: no recursion, no huge text)."""
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        return f"the integer {v}" if v.bit_length() <= 64 else f"an integer of {v.bit_length()} bits"
    if isinstance(v, float):
        return f"the number {v!r}"
    if isinstance(v, str):
        return f"the string {v[:60]!r}" + ("..." if len(v) > 60 else "")
    if isinstance(v, (bytes, bytearray)):
        return f"{len(v)} bytes"
    if isinstance(v, (tuple, list, dict, set, frozenset)):
        return f"{_a(type(v).__name__)} of {len(v)} items"
    if isinstance(v, Global):
        return f"the class or function {v.qualname}"
    if isinstance(v, Instance):
        return f"{_a(v.stub_of)} object"
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {list(v.shape)}"
    if isinstance(v, _Storage):
        return f"storage {v.key}"
    return _a(type(v).__name__)


def _a(noun):
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _key_text(k):
    return repr(k[:60]) if isinstance(k, str) else describe(k)


def _one_line(text, limit=300):
    """text on one line of printable characters (messages of libraries quote bytes of the file)."""
    text = "".join(c if c.isprintable() else "?" for c in " ".join(str(text).split()))
    return text if len(text) <= limit else text[:limit] + "..."


# ---- the zip ----

class _Zip:
    """The records of a torch.save zip, read with a running budget of inflated bytes."""

    def __init__(self, path, f):
        self.path = path
        size = path.stat().st_size
        self.cap = min(INFLATE_FACTOR * size, MAX_INFLATE)
        self.left = self.cap
        try:
            end = zipfile._EndRecData(f)
            if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > MAX_ENTRIES:
                self.fail(f"its zip directory lists {end[zipfile._ECD_ENTRIES_TOTAL]} entries (at most {MAX_ENTRIES})")
            f.seek(0)
            self.zip = zipfile.ZipFile(f)
            infos = self.zip.infolist()
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - zipfile parses untrusted bytes; any failure means a bad zip
            raise CheckpointError(f"checkpoint {path}: not a PyTorch checkpoint in torch.save's zip format "
                                  f"({_one_line(f'{type(e).__name__}: {e}')}); files from torch < 1.6 must be "
                                  "re-saved with a newer torch") from e
        if len(infos) > MAX_ENTRIES:
            self.fail(f"its zip directory holds {len(infos)} entries (at most {MAX_ENTRIES})")
        if not infos or "/" not in infos[0].filename:
            self.fail("not a PyTorch checkpoint in torch.save's zip format (no ARCHIVE/data.pkl)")
        # torch's own reader takes the folder of the first entry as the archive's name.
        self.prefix = infos[0].filename.split("/", 1)[0] + "/"
        self.records = {}
        for i in infos:
            self.records.setdefault(i.filename, i)
        if self.prefix + "data.pkl" not in self.records:
            self.fail("not a PyTorch checkpoint in torch.save's zip format (no ARCHIVE/data.pkl)")
        order = self.records.get(self.prefix + "byteorder")
        if order is not None and self.read("byteorder", limit=16) != b"little":
            self.fail("its byteorder record is not 'little': big-endian checkpoints are not supported")

    def fail(self, what):
        raise CheckpointError(f"checkpoint {self.path}: {what}")

    def read(self, name, expect=None, limit=None):
        """Record name's bytes (a bytearray); expect: the exact size the pickle declares for it."""
        info = self.records.get(self.prefix + name)
        if info is None:
            self.fail(f"record {name} is missing from the zip")
        size = info.file_size
        if info.flag_bits & 0x1:
            self.fail(f"record {name} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            self.fail(f"record {name} is compressed with zip method {info.compress_type} (torch.save stores records; "
                      "deflate is also accepted)")
        if expect is not None and size != expect:
            self.fail(f"record {name} holds {size} bytes but its storage declares {expect}: the file is cut or "
                      "altered; save it again with torch.save")
        if size > self.left:
            self.fail(f"its records inflate to more than {self.cap} bytes ({INFLATE_FACTOR} x the file's size, at "
                      f"most {MAX_INFLATE >> 30} GiB): record {name} declares {size}")
        if limit is not None and size > limit:
            self.fail(f"record {name} holds {size} bytes (at most {limit})")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != size:
            self.fail(f"record {name}: stored uncompressed, yet its sizes differ ({info.compress_size} and {size})")
        self.left -= size
        buf = bytearray(size)
        got = 0
        try:
            with self.zip.open(info) as r:
                while got < size:
                    chunk = r.read(min(4 * MiB, size - got))
                    if not chunk:
                        break
                    buf[got:got + len(chunk)] = chunk
                    got += len(chunk)
        except Exception as e:  # noqa: BLE001 - zipfile/zlib on untrusted bytes: bad CRC, bad header, bad stream
            self.fail(f"record {name} cannot be read ({_one_line(f'{type(e).__name__}: {e}')})")
        if got != size:
            self.fail(f"record {name} holds {got} bytes, its zip header declares {size}")
        return buf


# ---- the pickle ----

_ATOMS = (type(None), bool, int, float, complex, str, bytes, Global, Instance, _Storage, torch.Tensor)


class _Unpickler:
    """A pickle interpreter for checkpoints: opcodes of protocols 0-5 except extensions and out-of-band buffers.

    It builds only plain values (None, bool, int, float, str, bytes, tuple, list, dict, OrderedDict, set,
    frozenset), Global markers, inert Instances, and tensors from _rebuild_tensor*; see the module doc.
    """

    def __init__(self, data, where, storage):
        self.data, self.where, self.storage = data, where, storage
        self.pos = self.at = 0
        self.stack, self.marks, self.memo, self.globals = [], [], {}, {}
        self.left = MAX_OBJECT_BYTES
        self.calls = {
            ("torch._utils", "_rebuild_tensor"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self._rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): self._rebuild_from_type_v2,
            ("torch", "Size"): self._size,
            ("collections", "OrderedDict"): lambda a, k: self._container(collections.OrderedDict, a, k),
            ("builtins", "dict"): lambda a, k: self._container(dict, a, k),
            ("builtins", "list"): lambda a, k: self._container(list, a, k),
            ("builtins", "tuple"): lambda a, k: self._container(tuple, a, k),
            ("builtins", "set"): lambda a, k: self._container(set, a, k),
            ("builtins", "frozenset"): lambda a, k: self._container(frozenset, a, k),
            ("copyreg", "_reconstructor"): self._reconstructor,
            ("copyreg", "__newobj__"): self._newobj_fn,
            ("copyreg", "__newobj_ex__"): self._newobj_fn,
        }
        p = pickle
        ops = {
            p.PROTO: self.op_proto, p.FRAME: self.op_frame, p.STOP: None,
            p.NONE: lambda: self.push(None), p.NEWTRUE: lambda: self.push(True), p.NEWFALSE: lambda: self.push(False),
            p.BININT: lambda: self.push(struct.unpack("<i", self.take(4))[0]),
            p.BININT1: lambda: self.push(self.take(1)[0]),
            p.BININT2: lambda: self.push(struct.unpack("<H", self.take(2))[0]),
            p.LONG1: lambda: self.push(self.long(self.take(1)[0])),
            p.LONG4: lambda: self.push(self.long(struct.unpack("<i", self.take(4))[0])),
            p.INT: self.op_int, p.LONG: self.op_long, p.FLOAT: self.op_float,
            p.BINFLOAT: lambda: self.push(struct.unpack(">d", self.take(8))[0]),
            p.BINUNICODE: lambda: self.push(self.text(self.take(self.size(4)))),
            p.SHORT_BINUNICODE: lambda: self.push(self.text(self.take(self.take(1)[0]))),
            p.BINUNICODE8: lambda: self.push(self.text(self.take(self.size(8)))),
            p.UNICODE: self.op_unicode,
            p.BINBYTES: lambda: self.push(bytes(self.take(self.size(4)))),
            p.SHORT_BINBYTES: lambda: self.push(bytes(self.take(self.take(1)[0]))),
            p.BINBYTES8: lambda: self.push(bytes(self.take(self.size(8)))),
            p.BYTEARRAY8: lambda: self.push(bytearray(self.take(self.size(8)))),
            p.BINSTRING: lambda: self.push(self.py2str(self.take(self.size(4)))),
            p.SHORT_BINSTRING: lambda: self.push(self.py2str(self.take(self.take(1)[0]))),
            p.STRING: self.op_string,
            p.EMPTY_TUPLE: lambda: self.push(()),
            p.TUPLE1: lambda: self.op_tuple(1), p.TUPLE2: lambda: self.op_tuple(2), p.TUPLE3: lambda: self.op_tuple(3),
            p.TUPLE: lambda: self.push(tuple(self.pop_mark())),
            p.EMPTY_LIST: lambda: self.push([]), p.LIST: lambda: self.push(self.pop_mark()),
            p.APPEND: lambda: self.extend([self.pop()]), p.APPENDS: lambda: self.extend(self.pop_mark()),
            p.EMPTY_DICT: lambda: self.push({}), p.DICT: self.op_dict,
            p.SETITEM: self.op_setitem, p.SETITEMS: self.op_setitems,
            p.EMPTY_SET: lambda: self.push(set()), p.ADDITEMS: self.op_additems,
            p.FROZENSET: lambda: self.push(frozenset(self.keys(self.pop_mark()))),
            p.MARK: lambda: self.marks.append(len(self.stack)),
            p.POP: self.op_pop, p.POP_MARK: self.pop_mark, p.DUP: lambda: self.push(self.top()),
            p.PUT: lambda: self.put(self.text_int(self.line(MAX_TEXT_NUMBER))),
            p.BINPUT: lambda: self.put(self.take(1)[0]),
            p.LONG_BINPUT: lambda: self.put(struct.unpack("<I", self.take(4))[0]),
            p.MEMOIZE: lambda: self.put(len(self.memo)),
            p.GET: lambda: self.get(self.text_int(self.line(MAX_TEXT_NUMBER))),
            p.BINGET: lambda: self.get(self.take(1)[0]),
            p.LONG_BINGET: lambda: self.get(struct.unpack("<I", self.take(4))[0]),
            p.GLOBAL: lambda: self.push(self.glob(self.text(self.line(400)), self.text(self.line(400)))),
            p.STACK_GLOBAL: self.op_stack_global,
            p.REDUCE: self.op_reduce, p.NEWOBJ: self.op_newobj, p.NEWOBJ_EX: self.op_newobj_ex,
            p.BUILD: self.op_build, p.INST: self.op_inst, p.OBJ: self.op_obj,
            p.BINPERSID: lambda: self.push(self.persistent(self.pop())),
            p.PERSID: lambda: self.push(self.persistent(self.text(self.line(400)))),
        }
        self.ops = {code[0]: fn for code, fn in ops.items()}
        self.stop = p.STOP[0]

    # -- plumbing --

    def fail(self, what):
        raise CheckpointError(f"{self.where}: data.pkl, byte {self.at}: {what}; not a pickle torch.save writes "
                              "(save the weights again with torch.save)")

    def take(self, n):
        end = self.pos + n
        if end > len(self.data):
            self.fail("the pickle ends inside an opcode (the file is cut)")
        b = self.data[self.pos:end]
        self.pos = end
        return b

    def size(self, width):
        n = int.from_bytes(self.take(width), "little")
        if n > len(self.data) - self.pos:
            self.fail(f"an item of {n} bytes, longer than the rest of the pickle")
        return n

    def line(self, limit):
        end = self.data.find(b"\n", self.pos, self.pos + limit + 1)
        if end < 0:
            self.fail(f"a text opcode without its newline within {limit} bytes")
        b = self.data[self.pos:end]
        self.pos = end + 1
        return b

    def text(self, b):
        try:
            return str(b, "utf-8", "surrogatepass")
        except UnicodeDecodeError:
            self.fail("a string that is not UTF-8")

    @staticmethod
    def py2str(b):
        return str(b, "utf-8", "replace")  # a Python 2 str; only decoded, as torch.load(encoding='utf-8') does

    def text_int(self, b):
        try:
            return int(b)
        except ValueError:
            self.fail(f"{_one_line(bytes(b)[:40])!s} is not an integer")

    def long(self, n):
        if n < 0 or n > MAX_INT_BYTES:
            self.fail(f"an integer of {n} bytes (at most {MAX_INT_BYTES})")
        return int.from_bytes(self.take(n), "little", signed=True)

    def push(self, v):
        # Every push is charged what its value may take (a memo or DUP reference is charged again: an
        # overestimate that only matters to a pickle building millions of values).
        t = type(v)
        if t in (str, bytes, bytearray):
            self.spend(64 + len(v))
        elif t in (list, dict, set, frozenset, collections.OrderedDict, Instance):
            self.spend(256)
        elif t is torch.Tensor:
            self.spend(512)
        else:
            self.spend(32)
        self.stack.append(v)

    def pop(self):
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            self.fail("pops from an empty stack")
        return self.stack.pop()

    def top(self):
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            self.fail("reads an empty stack")
        return self.stack[-1]

    def pop_mark(self):
        if not self.marks:
            self.fail("an opcode needs a MARK that is not there")
        k = self.marks.pop()
        items = self.stack[k:]
        del self.stack[k:]
        return items

    def spend(self, n):
        self.left -= n
        if self.left < 0:
            self.fail(f"builds more than {MAX_OBJECT_BYTES >> 20} MiB of objects (the reader's estimate; a seed "
                      "checkpoint's take ~5 MiB)")

    def charge(self, items):
        self.spend(16 * items)  # a slot in a list, dict or set

    def key(self, k):
        """k if it may be a dict key or set item: an atom, a short tuple of atoms or a frozenset (its hash is
        cached), so that hashing stays flat and cheap."""
        t = type(k)
        if t is tuple:  # hashed anew at each use: short and flat
            if len(k) <= MAX_KEY_TUPLE and all(isinstance(x, _ATOMS) or type(x) is frozenset for x in k):
                return k
        elif t is frozenset or isinstance(k, _ATOMS):
            return k
        self.fail(f"a dict key or set item that is {describe(k)}")

    def keys(self, items):
        self.charge(len(items))
        return [self.key(k) for k in items]

    def put(self, i):
        self.spend(64)
        self.memo[i] = self.top()

    def get(self, i):
        if i not in self.memo:
            self.fail(f"memo entry {i} was never stored")
        self.push(self.memo[i])

    # -- opcodes --

    def load(self):
        data, ops, stop = self.data, self.ops, self.stop
        while True:
            self.at = self.pos
            if self.pos >= len(data):
                self.fail("the pickle ends without STOP (the file is cut)")
            code = data[self.pos]
            self.pos += 1
            if code == stop:
                return self.pop()
            fn = ops.get(code)
            if fn is None:
                self.fail(f"opcode {bytes([code])!r} is not accepted (extension codes and out-of-band buffers are "
                          "not part of torch.save's format)")
            fn()

    def op_proto(self):
        if self.take(1)[0] > 5:
            self.fail("pickle protocol above 5")

    def op_frame(self):
        if int.from_bytes(self.take(8), "little") > len(self.data) - self.pos:
            self.fail("a frame longer than the rest of the pickle")

    def op_int(self):
        b = bytes(self.line(MAX_TEXT_NUMBER))
        self.push(b == b"01" if b in (b"00", b"01") else self.text_int(b))  # I00/I01: protocol 0's False/True

    def op_long(self):
        b = self.line(MAX_TEXT_NUMBER)
        self.push(self.text_int(b[:-1] if b.endswith(b"L") else b))

    def op_float(self):
        b = self.line(MAX_TEXT_NUMBER)
        try:
            self.push(float(b))
        except ValueError:
            self.fail("a FLOAT that is not a number")

    def op_unicode(self):
        try:
            self.push(str(self.line(len(self.data)), "raw-unicode-escape"))
        except UnicodeDecodeError:
            self.fail("a UNICODE string that does not decode")

    def op_string(self):
        b = bytes(self.line(len(self.data)))
        if len(b) < 2 or b[0] != b[-1] or b[:1] not in (b"'", b'"'):
            self.fail("a STRING that is not quoted")
        try:
            self.push(self.py2str(codecs.escape_decode(b[1:-1])[0]))
        except ValueError:
            self.fail("a STRING with a bad escape")

    def op_tuple(self, n):
        items = [self.pop() for _ in range(n)]
        self.push(tuple(reversed(items)))

    def op_pop(self):
        if self.marks and self.marks[-1] == len(self.stack):
            self.marks.pop()  # POP of a MARK, as pickle's own does
        else:
            self.pop()

    def extend(self, items):
        target = self.top()
        self.charge(len(items))
        if type(target) is list:
            target.extend(items)
        elif isinstance(target, Instance):
            if target.listitems is None:
                target.listitems = []
            target.listitems.extend(items)
        else:
            self.fail(f"APPEND to {describe(target)}")

    def op_dict(self):
        items = self.pop_mark()
        if len(items) % 2:
            self.fail("DICT with an odd number of items")
        d = {}
        self.setitems(d, items)
        self.push(d)

    def op_setitem(self):
        v = self.pop()
        k = self.pop()
        self.setitems(self.top(), [k, v])

    def op_setitems(self):
        items = self.pop_mark()
        if len(items) % 2:
            self.fail("SETITEMS with an odd number of items")
        self.setitems(self.top(), items)

    def setitems(self, target, items):
        self.charge(len(items) // 2)
        if isinstance(target, dict):
            for i in range(0, len(items), 2):
                target[self.key(items[i])] = items[i + 1]
        elif isinstance(target, Instance):
            if target.dictitems is None:
                target.dictitems = []
            target.dictitems.extend(zip(items[::2], items[1::2]))
        else:
            self.fail(f"SETITEM on {describe(target)}")

    def op_additems(self):
        items = self.pop_mark()
        target = self.top()
        if type(target) is not set:
            self.fail(f"ADDITEMS to {describe(target)}")
        target.update(self.keys(items))

    def glob(self, module, name):
        # Checked before anything hashes them: STACK_GLOBAL takes them from the stack, where anything may be.
        if not (type(module) is str and type(name) is str and _GLOBAL_NAME.match(module) and _GLOBAL_NAME.match(name)):
            self.fail("a global whose module or name is not a Python identifier")
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol-2 pickles name Python 2 modules
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        g = self.globals.get((module, name))
        if g is None:
            g = self.globals[(module, name)] = Global(module, name)
        return g

    def op_stack_global(self):
        name = self.pop()
        module = self.pop()
        self.push(self.glob(module, name))

    def call(self, callee, args, kwargs=None):
        """What calling callee(*args, **kwargs) gives: the reader's own code for the few it knows, else a stand-in."""
        if not isinstance(args, tuple):
            self.fail(f"call arguments are {describe(args)}, not a tuple")
        if kwargs is not None and not isinstance(kwargs, dict):
            self.fail(f"call keyword arguments are {describe(kwargs)}, not a dict")
        if isinstance(callee, Instance):
            return Instance(callee.of, args, kwargs)
        if not isinstance(callee, Global):
            self.fail(f"calls {describe(callee)}")
        fn = self.calls.get((callee.module, callee.name))
        if fn is None:
            return Instance(callee, args, kwargs)
        return fn(args, kwargs or {})

    def op_reduce(self):
        args = self.pop()
        self.push(self.call(self.pop(), args))

    def newobj(self, cls, args, kwargs):
        # cls.__new__(cls, ...): only a stand-in; never the reader's functions or containers.
        if isinstance(cls, Global) and (cls.module, cls.name) in self.calls:
            self.fail(f"creates {cls.qualname} with NEWOBJ")
        if not isinstance(cls, (Global, Instance)):
            self.fail(f"creates an object of {describe(cls)}")
        if not isinstance(args, tuple) or (kwargs is not None and not isinstance(kwargs, dict)):
            self.fail("NEWOBJ arguments that are not a tuple (and a dict)")
        return Instance(cls if isinstance(cls, Global) else cls.of, args, kwargs)

    def op_newobj(self):
        args = self.pop()
        self.push(self.newobj(self.pop(), args, None))

    def op_newobj_ex(self):
        kwargs = self.pop()
        args = self.pop()
        self.push(self.newobj(self.pop(), args, kwargs))

    def op_inst(self):
        g = self.glob(self.text(self.line(400)), self.text(self.line(400)))
        self.push(self.call(g, tuple(self.pop_mark())))

    def op_obj(self):
        items = self.pop_mark()
        if not items:
            self.fail("OBJ without a class")
        self.push(self.call(items[0], tuple(items[1:])))

    def op_build(self):
        state = self.pop()
        target = self.top()
        if isinstance(target, Instance):
            target.state = state
        elif type(target) is collections.OrderedDict and isinstance(state, dict):
            pass  # a state_dict's attributes (_metadata: each module's version); not needed to load it
        else:
            self.fail(f"sets the state of {describe(target)}")

    def persistent(self, pid):
        if not (type(pid) is tuple and len(pid) == 5 and type(pid[0]) in (str, bytes)
                and pid[0] in ("storage", b"storage")):
            self.fail(f"persistent id {describe(pid)} is not ('storage', type, key, location, numel)")
        _, stype, key, _location, numel = pid
        if not (isinstance(stype, Global) and stype.module == "torch" and stype.name in _STORAGES):
            self.fail(f"storage type {describe(stype)} is not one of torch's storages")
        if not (isinstance(key, str) and _RECORD_KEY.match(key)):
            self.fail(f"storage key {describe(key)} is not a record name")
        if type(numel) is not int or not 0 <= numel < _INDEX:
            self.fail(f"storage {key} declares {describe(numel)} elements")
        dtype, esize = _STORAGES[stype.name]
        return self.storage(key, dtype, esize, numel, self)

    # -- the calls the reader implements itself --

    def _ints(self, v, what, limit=_INDEX):
        if not isinstance(v, (tuple, list)) or len(v) > MAX_DIMS:
            self.fail(f"tensor {what} is {describe(v)}, not a tuple of at most {MAX_DIMS} integers")
        for x in v:
            if type(x) is not int or not 0 <= x < limit:
                self.fail(f"tensor {what} {describe(x)}: not an integer in 0..2^62")
        return tuple(v)

    def _rebuild_tensor(self, args, kwargs):
        if len(args) != 4 or kwargs:
            self.fail(f"_rebuild_tensor with {len(args)} arguments")
        return self.tensor(*args)

    def _rebuild_tensor_v2(self, args, kwargs):
        if len(args) not in (6, 7) or kwargs:  # (storage, offset, size, stride, requires_grad, hooks[, metadata])
            self.fail(f"_rebuild_tensor_v2 with {len(args)} arguments")
        return self.tensor(*args[:4])

    def tensor(self, storage, offset, size, stride):
        """A view of storage, checked to lie inside it before it is made."""
        if not isinstance(storage, _Storage):
            self.fail(f"a tensor's storage is {describe(storage)}, not a record of the file")
        if type(offset) is not int or not 0 <= offset < _INDEX:
            self.fail(f"tensor offset {describe(offset)}")
        size, stride = self._ints(size, "size"), self._ints(stride, "stride")
        if len(size) != len(stride):
            self.fail(f"a tensor of {len(size)} dimensions with {len(stride)} strides")
        numel = 1
        for s in size:
            numel = min(numel * s, _INDEX)
        if numel == 0:
            if offset > storage.numel:
                self.fail(f"an empty tensor at offset {offset} of storage {storage.key} of {storage.numel} elements")
        else:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= storage.numel:
                self.fail(f"a tensor of shape {list(size)}, stride {list(stride)}, offset {offset} reads element "
                          f"{last} of storage {storage.key}, which holds {storage.numel}")
            if numel > storage.numel:
                self.fail(f"a tensor of {numel} elements views storage {storage.key} of {storage.numel}")
        return storage.tensor.as_strided(size, stride, offset)

    def _rebuild_parameter(self, args, kwargs):
        if len(args) not in (3, 4) or kwargs or not isinstance(args[0], torch.Tensor):
            self.fail("_rebuild_parameter of something that is not a tensor")
        return args[0]

    def _rebuild_from_type_v2(self, args, kwargs):
        # (func, new_type, args, state): a tensor subclass or a tensor with attributes; kept as a plain tensor.
        if len(args) != 4 or kwargs or not isinstance(args[0], Global) or not isinstance(args[2], tuple):
            self.fail("_rebuild_from_type_v2 with arguments other than (func, type, args, state)")
        fn = self.calls.get((args[0].module, args[0].name))
        if fn not in (self._rebuild_tensor, self._rebuild_tensor_v2, self._rebuild_parameter):
            self.fail(f"_rebuild_from_type_v2 of {args[0].qualname}")
        return fn(args[2], {})

    def _size(self, args, kwargs):
        if len(args) != 1 or kwargs:
            self.fail("torch.Size with other than one argument")
        return self._ints(args[0], "size")

    def _container(self, kind, args, kwargs):
        if kwargs or len(args) > 1:
            self.fail(f"{kind.__name__}() with more than one argument")
        if not args:
            return kind()
        src = args[0]
        if kind in (dict, collections.OrderedDict):
            if isinstance(src, dict):
                pairs = list(src.items())
            elif isinstance(src, (list, tuple)) and all(type(p) is tuple and len(p) == 2 for p in src):
                pairs = src
            else:
                self.fail(f"{kind.__name__}() of {describe(src)}")
            self.charge(len(pairs))
            return kind((self.key(k), v) for k, v in pairs)
        if type(src) not in (list, tuple, set, frozenset):
            self.fail(f"{kind.__name__}() of {describe(src)}")
        self.charge(len(src))
        if kind in (set, frozenset):
            return kind(self.key(k) for k in src)
        return kind(src)

    def _reconstructor(self, args, kwargs):  # copyreg._reconstructor(cls, base, state), protocols 0-1
        if len(args) != 3 or kwargs or not isinstance(args[0], Global):
            self.fail("copyreg._reconstructor with arguments other than (class, base, state)")
        return Instance(args[0], args[2:])

    def _newobj_fn(self, args, kwargs):  # copyreg.__newobj__(cls, *args) called by REDUCE
        if not args or not isinstance(args[0], Global) or (args[0].module, args[0].name) in self.calls:
            self.fail("copyreg.__newobj__ of something that is not a class")
        return Instance(args[0], args[1:], kwargs)


def _load(path):
    """The object pickled in path, with tensors built by the reader from the zip's records (see the module doc)."""
    with open(path, "rb") as f:
        z = _Zip(path, f)
        pkl = z.read("data.pkl", limit=MAX_PICKLE)
        storages = {}

        def storage(key, dtype, esize, numel, up):
            s = storages.get(key)
            if s is not None:
                if (s.dtype, s.numel) != (dtype, numel):
                    up.fail(f"storage {key} is declared as {numel} {dtype} and as {s.numel} {s.dtype}")
                return s
            buf = z.read(f"data/{key}", expect=numel * esize)
            if dtype is torch.bool and buf.translate(None, b"\x00\x01"):
                up.fail(f"bool storage {key} holds bytes other than 0 and 1")
            t = torch.frombuffer(buf, dtype=dtype) if numel else torch.empty(0, dtype=dtype)
            s = storages[key] = _Storage(key, dtype, numel, t)
            return s

        return _Unpickler(pkl, f"checkpoint {path}", storage).load()


# ---- from the object to the state_dict ----

def _check_sd(path, sd):
    if len(sd) > MAX_KEYS:
        raise CheckpointError(f"checkpoint {path}: {len(sd)} tensors (at most {MAX_KEYS})")
    for k, v in sd.items():
        if not isinstance(k, str) or not k or len(k) > MAX_KEY_CHARS or not k.isprintable():
            raise CheckpointError(f"checkpoint {path}: a state_dict key that is {describe(k)}; keys are printable "
                                  f"names of at most {MAX_KEY_CHARS} characters")
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: {k} is {describe(v)}, not a tensor")
    return sd


def collect_state_dict(module, path="?"):
    """nn.Module.state_dict() of a stand-in module: parameters, persistent buffers, then submodules.

    Walked with an explicit stack (no recursion); a module that contains itself, nesting deeper than
    MAX_MODULE_DEPTH or more than MAX_MODULES visits are refused."""
    sd = collections.OrderedDict()
    visits = walked = 0

    def fail(what):
        raise CheckpointError(f"checkpoint {path}: {what}")

    def entries(st, field, prefix):
        nonlocal walked
        d = st.get(field)
        if d is None:
            return []
        if not isinstance(d, dict):
            fail(f"{field} of module {prefix.rstrip('.') or '(root)'} is {describe(d)}, not a dict")
        walked += len(d)
        if walked > MAX_WALK:
            fail(f"its modules hold more than {MAX_WALK} entries in all (shared submodules count once per path)")
        return list(d.items())

    def enter(m, prefix, path_ids):
        nonlocal visits
        visits += 1
        if visits > MAX_MODULES:
            fail(f"more than {MAX_MODULES} modules")
        if len(path_ids) > MAX_MODULE_DEPTH:
            fail(f"modules nested deeper than {MAX_MODULE_DEPTH} at {prefix.rstrip('.')[:200]}")
        st = m.attrs()
        skip = st.get("_non_persistent_buffers_set")
        skip = skip if isinstance(skip, (set, frozenset)) else set()
        for field, kind in (("_parameters", "parameter"), ("_buffers", "buffer")):
            for name, t in entries(st, field, prefix):
                if t is None or (field == "_buffers" and isinstance(name, str) and name in skip):
                    continue
                if not isinstance(name, str):
                    fail(f"a {kind} of module {prefix.rstrip('.') or '(root)'} is named by {describe(name)}")
                if not isinstance(t, torch.Tensor):
                    fail(f"{kind} {prefix + name} is {describe(t)}, not a tensor")
                sd[prefix + name] = t
                if len(sd) > MAX_KEYS:
                    fail(f"more than {MAX_KEYS} tensors")
        subs = []
        for name, sub in entries(st, "_modules", prefix):
            if sub is None:
                continue
            if not isinstance(name, str) or len(prefix) + len(name) > MAX_KEY_CHARS:
                fail(f"a submodule of {prefix.rstrip('.') or '(root)'} is named by {describe(name)}")
            if not isinstance(sub, Instance):
                fail(f"module {prefix + name} is {describe(sub)}, not a module")
            if id(sub) in path_ids:
                fail(f"module {prefix + name} contains itself (a cycle in _modules)")
            subs.append((sub, prefix + name + "."))
        return iter(subs)

    stack = [(enter(module, "", {id(module)}), {id(module)})]
    while stack:
        it, ids = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            stack.pop()
            continue
        sub, prefix = nxt
        sub_ids = ids | {id(sub)}
        stack.append((enter(sub, prefix, sub_ids), sub_ids))
    return sd


def _names(path, names):
    """{id: name} from a checkpoint's names (a dict or list), None without; anything else is refused."""
    if names is None:
        return None
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        raise CheckpointError(f"checkpoint {path}: names is {describe(names)}; expected {{class id: name}} or a list")
    if len(names) > MAX_NAMES:
        raise CheckpointError(f"checkpoint {path}: {len(names)} class names (at most {MAX_NAMES})")
    out = {}
    for k, v in names.items():
        i = k if type(k) is int else (int(k) if isinstance(k, str) and k.isdigit() and len(k) <= 6 else None)
        if i is None or not 0 <= i < MAX_NAMES:
            raise CheckpointError(f"checkpoint {path}: names has the key {describe(k)}; class ids are integers "
                                  f"0..{MAX_NAMES - 1}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or len(v) > MAX_NAME_CHARS or not v.isprintable():
            raise CheckpointError(f"checkpoint {path}: class {i} is named by {describe(v)}; names are printable "
                                  f"strings of at most {MAX_NAME_CHARS} characters")
        if i in out:
            raise CheckpointError(f"checkpoint {path}: names gives class {i} twice")
        out[i] = v
    return out


def read(path):
    """Reads a checkpoint without executing it: returns (state_dict, names {id: name}, info dict)."""
    path = Path(path)
    if not path.is_file():
        what = "no such file" if not path.exists() else "not a regular file"
        raise CheckpointError(f"checkpoint {path}: {what}")
    try:
        return _read(path)
    except CheckpointError:
        raise
    except MemoryError as e:
        raise CheckpointError(f"checkpoint {path}: does not fit in memory") from e
    except Exception as e:  # noqa: BLE001 - a bug of this reader: still one line, and the fuzz harness flags it
        raise CheckpointError(f"checkpoint {path}: internal error of the checkpoint reader "
                              f"({_one_line(f'{type(e).__name__}: {e}')}); please report it with the file") from e


def _read(path):
    try:
        ckpt = _load(path)
    except OSError as e:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({e.strerror})") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict with 'ema' or 'model' (an ultralytics "
                              f"best.pt/last.pt), got {describe(ckpt)}")
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        model = ckpt  # a bare state_dict
    else:
        model = next((ckpt[k] for k in ("ema", "model", "state_dict") if ckpt.get(k) is not None), None)
    if isinstance(model, Instance):
        sd = collect_state_dict(model, path)
        st = model.attrs()
        names = st.get("names")
        yaml_cfg = st.get("yaml") if isinstance(st.get("yaml"), dict) else {}
        kind = model.stub_of
    elif isinstance(model, dict) and all(isinstance(v, torch.Tensor) for v in model.values()):
        sd, names, yaml_cfg, kind = model, ckpt.get("names"), {}, "state_dict"
        _check_sd(path, sd)
        if sd and all(k.startswith("model.model.") for k in sd):  # saved from a wrapper (ultralytics' YOLO/RTDETR)
            sd = {k[len("model."):]: v for k, v in sd.items()}
    else:
        held = "; ".join(f"{_key_text(k)} is {describe(v)}" for k, v in list(ckpt.items())[:4])
        raise CheckpointError(f"checkpoint {path}: holds no model or state_dict under 'ema', 'model' or "
                              f"'state_dict' ({held or 'it is empty'}{'; ...' if len(ckpt) > 4 else ''}); nothing "
                              "in the file was run; save one with torch.save(model.state_dict(), path)")
    if not sd:
        raise CheckpointError(f"checkpoint {path}: its model is {describe(model)}, which holds no parameters; globals "
                              "other than tensors and plain containers are not loaded (nothing in the file was run)")
    _check_sd(path, sd)
    names = _names(path, names)
    nc = yaml_cfg.get("nc")
    epoch = ckpt.get("epoch")
    info = {"class": kind, "yaml_nc": nc if type(nc) is int else None,
            "epoch": epoch if type(epoch) is int else None, "dtype": str(next(iter(sd.values())).dtype)}
    return sd, names, info


def nc_of(sd):
    """nc from the decoder's encoder score head (row 18 of the seed), or None."""
    w = sd.get("model.18.enc_score_head.weight")
    return int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() >= 1 else None


def check_keys(path, own, sd, what):
    """Raises one CheckpointError listing every missing, unexpected and mis-shaped key of sd against own."""
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {list(sd[k].shape)} (model {list(own[k].shape)})" for k in own
              if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return

    def few(keys):
        return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

    parts = [f"missing keys: {few(missing)}" if missing else "",
             f"unexpected keys: {few(unexpected)}" if unexpected else "",
             f"wrong shapes: {few(shapes)}" if shapes else ""]
    raise CheckpointError(f"checkpoint {path} is not {what}: " + "; ".join(p for p in parts if p)
                          + "; train or export with the architecture and class count it was saved with")
