"""Reads checkpoints of the seed model from anywhere (the seed's fork, stock ultralytics, this project) safely.

A fork's ``best.pt`` is a pickled dict whose ``ema``/``model`` is the fork's DetectionModel, with classes
under ``ultralytics.nn.AddModules.*`` that neither stock ultralytics nor this project has. It is read with
a restricted unpickler: only the functions that rebuild tensors and parameters, tensor storages, dtypes
and plain containers are resolved; every other global becomes an inert stand-in (``Stub``) that records
the arguments and state the pickle gives it and runs nothing. The stand-ins still carry each module's
``_parameters``, ``_buffers`` and ``_modules``, from which the state_dict is collected exactly as
``nn.Module.state_dict`` would. A checkpoint written by stock ultralytics with this project's modules
reads the same way.

Nothing here needs ultralytics or the fork: model.reference loads the weights into its own model, and
model.ultralytics into the one stock ultralytics builds; both refuse a checkpoint of another architecture
or class count with one error listing the missing, unexpected and mis-shaped keys (check_keys).
"""
import _compat_pickle
import collections
import io
import pickle
from pathlib import Path

import torch

# (module, name) pairs the unpickler resolves to the real object; everything else becomes a Stub.
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
}
_STORAGES = {n for n in dir(torch) if n.endswith("Storage")}  # FloatStorage, HalfStorage, ..., UntypedStorage
_DTYPES = {n for n in dir(torch) if isinstance(getattr(torch, n), torch.dtype)}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


class Stub:
    """Inert stand-in for a global the checkpoint names but this loader does not trust.

    It accepts whatever the pickle passes (constructor arguments, state) and keeps it as data.
    """

    stub_of = "?"

    def __init__(self, *args, **kwargs):
        self.stub_args, self.stub_kwargs = args, kwargs

    def __setstate__(self, state):
        # A module's state is its __dict__ (maybe with slot state as a pair): keep it as plain data.
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]
        self.stub_state = state

    def __call__(self, *args, **kwargs):  # a stub used as a callable by the pickle (REDUCE on an instance)
        return Stub(*args, **kwargs)

    def state(self):
        return self.stub_state if isinstance(getattr(self, "stub_state", None), dict) else {}

    def __repr__(self):
        return self.stub_of + ("(...)" if hasattr(self, "stub_args") else "")


_stub_classes = {}


def _stub(module, name):
    key = f"{module}.{name}"
    if key not in _stub_classes:
        _stub_classes[key] = type(name, (Stub,), {"stub_of": key, "__module__": "model.reference.checkpoint.stubs"})
    return _stub_classes[key]


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only _ALLOWED globals, torch storages and dtypes; others become Stubs."""

    stubbed = None  # set of "module.name" replaced by stand-ins, per instance

    def find_class(self, module, name):
        # Protocol-2 pickles name Python 2 modules (__builtin__.set); map them as pickle's own find_class does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED or (module == "torch" and (name in _STORAGES or name in _DTYPES)):
            return super().find_class(module, name)
        if self.stubbed is None:
            self.stubbed = set()
        self.stubbed.add(f"{module}.{name}")
        return _stub(module, name)


def _unpickle_zip(path):
    """Reads torch.save's zip format (torch >= 1.6) with RestrictedUnpickler; storages are loaded to the CPU.

    torch.load cannot be used: torch 1.13.0 (Debian's) replaces any pickle_module it is given by pickle.
    This follows torch.serialization._load: data.pkl holds the object, each storage is data/<key>.
    """
    try:
        reader = torch._C.PyTorchFileReader(str(path))
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path}: not a PyTorch checkpoint in torch.save's zip format ({e}); "
                              "files from torch < 1.6 must be re-saved with a newer torch") from e
    storages = {}

    def persistent_load(saved_id):
        kind, storage_type, key, _location, numel = saved_id
        if (kind.decode() if isinstance(kind, bytes) else kind) != "storage":
            raise CheckpointError(f"checkpoint {path}: unknown persistent id {kind!r}")
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
        if key not in storages:
            nbytes = numel * torch._utils._element_size(dtype)
            raw = reader.get_storage_from_record(f"data/{key}", nbytes, torch.UntypedStorage).storage().untyped()
            storages[key] = torch.storage.TypedStorage(wrap_storage=raw, dtype=dtype)
        return storages[key]

    unpickler = RestrictedUnpickler(io.BytesIO(reader.get_record("data.pkl")), encoding="utf-8")
    unpickler.persistent_load = persistent_load
    return unpickler.load()


def collect_state_dict(module):
    """nn.Module.state_dict() of a stubbed module: parameters, persistent buffers, then submodules."""
    sd = collections.OrderedDict()

    def walk(m, prefix):
        st = m.state() if isinstance(m, Stub) else {}
        skip = st.get("_non_persistent_buffers_set") or set()
        for name, p in (st.get("_parameters") or {}).items():
            if p is not None:
                sd[prefix + name] = p.detach() if isinstance(p, torch.Tensor) else p
        for name, b in (st.get("_buffers") or {}).items():
            if b is not None and name not in skip:
                sd[prefix + name] = b
        for name, sub in (st.get("_modules") or {}).items():
            if sub is not None:
                walk(sub, prefix + name + ".")

    walk(module, "")
    return sd


def read(path):
    """Reads a checkpoint without executing it: returns (state_dict, names {id: name}, info dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        ckpt = _unpickle_zip(path)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CheckpointError(f"checkpoint {path}: not a PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(ckpt, Stub) or not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict with 'ema' or 'model' (an ultralytics "
                              f"best.pt/last.pt), got {type(ckpt).__name__}")
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        model = ckpt  # a bare state_dict
    else:
        model = next((ckpt[k] for k in ("ema", "model", "state_dict") if ckpt.get(k) is not None), None)
    if isinstance(model, Stub):
        sd = collect_state_dict(model)
        st = model.state()
        names = st.get("names")
        yaml_cfg = st.get("yaml") if isinstance(st.get("yaml"), dict) else {}
        kind = model.stub_of
    elif isinstance(model, dict) and all(isinstance(v, torch.Tensor) for v in model.values()):
        sd, names, yaml_cfg, kind = model, ckpt.get("names"), {}, "state_dict"
        if sd and all(k.startswith("model.model.") for k in sd):  # saved from a wrapper (ultralytics' YOLO/RTDETR)
            sd = {k[len("model."):]: v for k, v in sd.items()}
    else:
        raise CheckpointError(f"checkpoint {path}: holds no model or state_dict under 'ema', 'model' or "
                              "'state_dict'; save one with torch.save(model.state_dict(), path)")
    if not sd:
        raise CheckpointError(f"checkpoint {path}: its model is {model!r}, which holds no parameters; globals other "
                              "than tensors and plain containers are not loaded (nothing in the file was run)")
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        names = None
    else:
        names = {int(k): str(v) for k, v in names.items()}
    info = {"class": kind, "yaml_nc": yaml_cfg.get("nc"), "epoch": ckpt.get("epoch"),
            "dtype": str(next(iter(sd.values())).dtype)}
    return sd, names, info


def nc_of(sd):
    """nc from the decoder's encoder score head (row 18 of the seed), or None."""
    w = sd.get("model.18.enc_score_head.weight")
    return int(w.shape[0]) if isinstance(w, torch.Tensor) else None


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
