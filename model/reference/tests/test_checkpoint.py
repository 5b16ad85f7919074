"""The checkpoint reader (model.reference.checkpoint): honest files read as torch.load reads them, hostile
ones (issue #23 findings 1, 2, 3 and 10) are refused with one line, and a bounded fuzz run.

A hostile file is read by `python -m model.reference.export --weights FILE` in a child process under an
address-space limit and a deadline, so a crash, a hang or a blow-up of the reader fails the test instead
of the test runner; the child's exit code, stderr and peak RSS (wait4) are asserted.
"""
import collections
import io
import json
import os
import pathlib
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import unittest
import zipfile

import torch

from model.reference import checkpoint, seed
from model.reference.tests import craft

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MAX_RSS_MB = 512


def run_limited(args, timeout, mem_bytes):
    """python -m args in a child with RLIMIT_AS mem_bytes, killed at the deadline.

    Returns (exit code, negative for a signal; stderr; peak RSS in MB; whether the deadline killed it)."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))  # noqa: E731
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limit)
        lock, state = threading.Lock(), {"done": False, "killed": False}

        def deadline():
            with lock:
                if not state["done"]:
                    state["killed"] = True
                    os.kill(p.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, deadline)
        timer.start()
        try:
            os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited (a zombie: its pid is not reused yet)
            with lock:
                state["done"] = True
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return p.returncode, err.read().decode(errors="replace"), usage.ru_maxrss / 1024, state["killed"]


class HostileFileTest(unittest.TestCase):
    """Issue #23 findings 1-3: each file through the CLI, which must exit 2 with one line, fast and small."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.sd_zip = craft.saved(seed.build(2, "tiny", 0).state_dict())

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def refused(self, data, name, want, timeout=60, mem=3 * (1 << 30)):
        path = os.path.join(self.tmp.name, name)
        with open(path, "wb") as f:
            f.write(data)
        out = os.path.join(self.tmp.name, name + ".onnx")
        code, err, rss, killed = run_limited(["model.reference.export", "--arch", "tiny", "--nc", "2", "--weights",
                                              path, "--out", out], timeout, mem)
        self.assertFalse(killed, f"{name}: still running after {timeout}s (peak RSS {rss:.0f} MB)")
        self.assertEqual(code, 2, f"{name}: exit {code}, peak RSS {rss:.0f} MB, stderr: {err[-2000:]}")
        self.assertLess(rss, MAX_RSS_MB, f"{name}: peak RSS {rss:.0f} MB, stderr: {err[-2000:]}")
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith(f"error: checkpoint {path}: "), lines[0])
        self.assertIn(want, lines[0])
        self.assertFalse(os.path.exists(out))
        return lines[0]

    def test_allocator_keyword_is_never_passed_to_torch(self):
        # Finding 1: on torch 1.13 UntypedStorage(16, allocator=N) calls through N: exit -11 (SIGSEGV).
        self.refused(craft.allocator_pointer(), "allocator.pt", "'w' is a torch.UntypedStorage object")

    def test_record_shorter_than_its_storage(self):
        # Finding 2: the 73,728-byte record cut to 16 bytes exported with exit 0 and heap bytes in the weights.
        data, record, n = craft.short_record(self.sd_zip)
        self.refused(data, "short.pt", f"record {record} holds 16 bytes but its storage declares {n}")

    def test_pickle_that_inflates_to_a_gibibyte(self):
        # Finding 3: 1 MB of zip whose data.pkl inflates to 1 GiB; it took 2.3 GB resident before.
        data = craft.inflating_pickle(1 << 30)
        self.assertLess(len(data), 2 << 20)
        self.refused(data, "bomb.pt", "its records inflate to more than")

    def test_frozenset_of_a_huge_storage(self):
        # Finding 3: frozenset(UntypedStorage(2**32)) iterated 4 Gi elements (still running after 60 s).
        self.refused(craft.frozenset_storage(), "frozenset.pt", "frozenset() of a torch.UntypedStorage object",
                     timeout=30, mem=8 * (1 << 30))

    def test_container_copies_are_bounded(self):
        # list(L) 20,000 times over a 200,000-item L: 4e9 list slots from a 640 KB file.
        self.refused(craft.list_copies(), "copies.pt", "MiB of objects")

    def test_non_tensor_parameter_is_one_line(self):
        # Finding 10 through the CLI: it was a traceback (AttributeError) with exit 1.
        data = module_checkpoint(lambda Det, Conv: {"0": {"weight": 5, "bias": torch.zeros(2)}})
        self.refused(data, "param.pt", "parameter model.0.weight is the integer 5, not a tensor")


def module_checkpoint(params, names=None, self_loop=False):
    """{'ema': DetectionModel of foreign classes with submodules model.K holding params(Det, Conv)[K], ...}."""
    with craft.foreign_classes("ultralytics.nn.tasks.DetectionModel", "ultralytics.nn.modules.Conv") as (Det, Conv):
        subs = {k: craft.module(Conv, parameters=v) for k, v in params(Det, Conv).items()}
        inner = craft.module(Conv, modules=subs)
        det = craft.module(Det, modules={"model": inner}, names=names(Det, Conv) if callable(names) else names)
        if self_loop:
            inner._modules["again"] = inner
        return craft.saved({"epoch": -1, "ema": det, "model": None})


class MalformedStructureTest(unittest.TestCase):
    """Finding 10 and its kin: every malformed structure is one CheckpointError naming the file."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.n = 0

    def write(self, data):
        self.n += 1
        path = os.path.join(self.dir.name, f"c{self.n}.pt")
        with open(path, "wb") as f:
            f.write(data)
        return path

    def refused(self, data, want):
        path = self.write(data)
        with self.assertRaises(checkpoint.CheckpointError) as cm:
            checkpoint.read(path)
        msg = str(cm.exception)
        self.assertEqual(len(msg.splitlines()), 1, msg)
        self.assertTrue(msg.startswith(f"checkpoint {path}: "), msg)
        self.assertIn(want, msg)
        self.assertNotIn("internal error", msg)
        return msg

    def params(self, Det, Conv):
        return {"0": {"weight": torch.ones(2, 3)}}

    def test_names_key_that_is_a_class(self):
        self.refused(module_checkpoint(self.params, names=lambda Det, Conv: {Conv: "a"}),
                     "names has the key the class or function ultralytics.nn.modules.Conv")

    def test_names_that_is_a_class_or_holds_one(self):
        self.refused(module_checkpoint(self.params, names=lambda Det, Conv: Conv),
                     "names is the class or function ultralytics.nn.modules.Conv")
        self.refused(module_checkpoint(self.params, names=lambda Det, Conv: {0: Det}),
                     "class 0 is named by the class or function ultralytics.nn.tasks.DetectionModel")

    def test_names_with_a_5000_digit_key(self):
        self.refused(module_checkpoint(self.params, names={10 ** 4999: "a"}), "an integer of 2076 bytes")
        self.refused(craft.saved({"model": {"w": torch.ones(1)}, "names": {"1" * 5000: "a"}}),
                     "names has the key the string '1111")
        self.refused(craft.saved({"model": {"w": torch.ones(1)}, "names": {2 ** 100: "a"}}),
                     "names has the key an integer of 101 bits")
        self.refused(craft.saved({"model": {"w": torch.ones(1)}, "names": ["a\nb"]}), "class 0 is named by")

    def test_module_containing_itself(self):
        self.refused(module_checkpoint(self.params, self_loop=True), "module model.again contains itself")

    def test_non_tensor_parameter_and_key(self):
        self.refused(module_checkpoint(lambda Det, Conv: {"0": {"weight": 5}}),
                     "parameter model.0.weight is the integer 5, not a tensor")
        self.refused(module_checkpoint(lambda Det, Conv: {"0": {"weight": "w"}, "1": {"bias": torch.ones(1)}}),
                     "parameter model.0.weight is the string 'w', not a tensor")
        self.refused(craft.saved({"model": {3: torch.ones(1)}}), "a state_dict key that is the integer 3")

    def test_tensor_outside_its_storage(self):
        def one(offset, size, stride, numel=6):
            a = craft.Asm().op(pickle.EMPTY_DICT).str("w")
            a.tensor("FloatStorage", "0", numel, offset, size, stride).setitem()
            return craft.torch_zip(a.stop(), {"0": bytes(4 * numel)})

        self.refused(one(0, (2, 4), (4, 1)), "reads element 7 of storage 0, which holds 6")
        self.refused(one(5, (2,), (1,)), "reads element 6 of storage 0")
        self.refused(one(0, (1000, 1000), (0, 0)), "a tensor of 1000000 elements views storage 0 of 6")
        self.refused(one(0, (2,), (-1,)), "tensor stride the integer -1")
        self.refused(one(7, (0,), (1,)), "an empty tensor at offset 7")
        self.refused(one(0, tuple([1] * 40), tuple([1] * 40)), "not a tuple of at most 32 integers")

    def test_storage_declared_twice_or_missing(self):
        a = craft.Asm().op(pickle.EMPTY_DICT).str("a").tensor("FloatStorage", "0", 2, 0, (2,), (1,)).setitem()
        a.str("b").tensor("HalfStorage", "0", 4, 0, (4,), (1,)).setitem()
        self.refused(craft.torch_zip(a.stop(), {"0": bytes(8)}), "storage 0 is declared as 4 torch.float16")
        a = craft.Asm().op(pickle.EMPTY_DICT).str("a").tensor("FloatStorage", "7", 2, 0, (2,), (1,)).setitem()
        self.refused(craft.torch_zip(a.stop(), {"0": bytes(8)}), "record data/7 is missing")
        a = craft.Asm().op(pickle.EMPTY_DICT).str("a").tensor("FloatStorage", "../x", 2, 0, (2,), (1,)).setitem()
        self.refused(craft.torch_zip(a.stop()), "storage key the string '../x' is not a record name")
        a = craft.Asm().op(pickle.EMPTY_DICT).str("a").tensor("QInt8Storage", "0", 2, 0, (2,), (1,)).setitem()
        self.refused(craft.torch_zip(a.stop(), {"0": bytes(2)}), "not one of torch's storages")
        a = craft.Asm().op(pickle.EMPTY_DICT).str("a").tensor("BoolStorage", "0", 2, 0, (2,), (1,)).setitem()
        self.refused(craft.torch_zip(a.stop(), {"0": b"\x01\x05"}), "holds bytes other than 0 and 1")

    def test_lying_zip_headers(self):
        sd = craft.saved({"w": torch.arange(8.0)})
        recs = craft.entries(sd)
        pkl = recs["data.pkl"]
        # data.pkl declares 1,000 bytes and its deflate stream holds 1 GiB of zeros: reading stops at 1,000.
        data = craft.raw_zip([("data.pkl", zipfile.ZIP_DEFLATED, 0, craft.deflate_zeros(1 << 30), 1000)])
        self.refused(data, "record data.pkl cannot be read")
        # A record whose header says 8 GiB: refused before a byte is allocated.
        a = craft.Asm().op(pickle.EMPTY_DICT).str("w").tensor("FloatStorage", "0", 1 << 31, 0, (4,), (1,)).setitem()
        data = craft.torch_zip(a.stop(), {"0": bytes(16)}, sizes={"data/0": 0xFFFFFFFF})
        self.refused(data, "record data/0 holds 4294967295 bytes but its storage declares 8589934592")
        # A record longer than the storage says.
        self.refused(craft.rezip(sd, {"data/0": bytes(40)}), "record data/0 holds 40 bytes but its storage declares 32")
        # Truncated files, and a stored record whose two sizes differ.
        self.refused(sd[:len(sd) // 2], "not a PyTorch checkpoint in torch.save's zip format")
        self.refused(craft.torch_zip(pkl[:-1], {"0": recs["data/0"]}), "the pickle ends without STOP")
        self.refused(craft.torch_zip(pkl, {"0": bytes(32)}, sizes={"data/0": 16}),
                     "record data/0 holds 16 bytes but its storage declares 32")
        a = craft.Asm().op(pickle.EMPTY_DICT).str("w").tensor("FloatStorage", "0", 4, 0, (4,), (1,)).setitem()
        self.refused(craft.torch_zip(a.stop(), {"0": bytes(32)}, sizes={"data/0": 16}), "its sizes differ")

    def test_pickle_opcodes_that_call_or_run_nothing(self):
        A = craft.Asm
        cases = [
            (A().glob("torch._utils", "_rebuild_tensor_v2").op(pickle.EMPTY_TUPLE).newobj(), "creates torch._utils"),
            (A().int(5).op(pickle.EMPTY_TUPLE).reduce(), "calls the integer 5"),
            (A().glob("builtins", "set").op(pickle.EMPTY_LIST).put(0).get(0).op(pickle.APPEND).tuple(1).reduce(),
             "a dict key or set item that is a list of 1 items"),
            (A().op(pickle.EMPTY_DICT).op(pickle.EMPTY_TUPLE).tuple(1).tuple(1).int(1).setitem(),
             "a dict key or set item that is a tuple of 1 items"),
            (A().op(pickle.EMPTY_DICT).mark().op(pickle.NONE * 65).tuple().int(1).setitem(),
             "a dict key or set item that is a tuple of 65 items"),  # tuples are hashed anew each time: short
            (A().op(pickle.EMPTY_DICT).op(pickle.EMPTY_DICT).build(), "sets the state of a dict"),
            (A().op(pickle.EXT1, b"\x01"), "is not accepted"),
            (A().op(pickle.LONG4, b"\x00\x00\x01\x00"), "an integer of 65536 bytes"),
            (A().op(pickle.BINUNICODE, b"\xff\xff\xff\x7f"), "longer than the rest of the pickle"),
            (A().op(pickle.BINGET, b"\x09"), "memo entry 9 was never stored"),
            (A().op(pickle.POP), "pops from an empty stack"),
            (A().op(pickle.GLOBAL, b"os\nsystem(1)\n"), "not a Python identifier"),
            (A().op(pickle.EMPTY_DICT).str("x").op(pickle.STACK_GLOBAL), "not a Python identifier"),  # found by fuzzing
            # A tuple 200,000 deep: hashing it would recurse in C (tuplehash has no depth check).
            (A().op(pickle.NONE + pickle.TUPLE1 * 200_000).str("x").op(pickle.STACK_GLOBAL), "not a Python identifier"),
            (A().op(pickle.INT, b"1" * 100 + b"\n"), "without its newline within 64 bytes"),
            (A().mark().str("x").op(pickle.BINPERSID), "is not ('storage', type, key, location, numel)"),
        ]
        for asm, want in cases:
            with self.subTest(want=want):
                self.refused(craft.torch_zip(asm.stop()), want)

    def test_foreign_globals_become_inert_objects(self):
        # The storage a pickle constructs itself is a stand-in, never a tensor's storage.
        a = craft.Asm().op(pickle.EMPTY_DICT).str("w").glob("torch._utils", "_rebuild_tensor_v2").mark()
        a.glob("torch", "FloatStorage").int(4).tuple(1).reduce().int(0).mark().int(4).tuple().mark().int(1).tuple()
        a.op(pickle.NEWFALSE).op(pickle.EMPTY_DICT).tuple().reduce().setitem()
        self.refused(craft.torch_zip(a.stop()), "a tensor's storage is a torch.FloatStorage object, not a record")
        marker = os.path.join(self.dir.name, "ran")
        a = craft.Asm().op(pickle.EMPTY_DICT).str("model").glob("os", "system").str(f"touch {marker}").tuple(1)
        self.refused(craft.torch_zip(a.reduce().setitem().stop()), "its model is an os.system object")
        self.assertFalse(os.path.exists(marker))


class HonestFileTest(unittest.TestCase):
    """What torch.save writes reads back exactly as torch.load reads it."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def read(self, data):
        path = os.path.join(self.dir.name, "c.pt")
        with open(path, "wb") as f:
            f.write(data)
        return checkpoint.read(path)

    def assertSameTensors(self, got, want):
        self.assertEqual(list(got), list(want))
        for k in want:
            self.assertEqual(got[k].dtype, want[k].dtype, k)
            self.assertEqual(got[k].shape, want[k].shape, k)
            self.assertTrue(torch.equal(got[k], want[k]), k)

    def test_state_dicts_fp32_and_fp16_every_pickle_protocol(self):
        sd = seed.build(2, "tiny", 3).state_dict()
        half = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
        for proto in (1, 2, 3, 4, 5):
            with self.subTest(protocol=proto):
                got, names, info = self.read(craft.saved(sd, pickle_protocol=proto))
                self.assertSameTensors(got, sd)
                self.assertIsNone(names)
                self.assertEqual(info["class"], "state_dict")
                got, names, info = self.read(craft.saved({"model": half, "names": {0: "person", 1: "car"}},
                                                         pickle_protocol=proto))
                self.assertSameTensors(got, half)
                self.assertEqual(names, {0: "person", 1: "car"})
                self.assertEqual(info["dtype"], "torch.float16")

    def test_views_dtypes_and_shared_storages(self):
        x = torch.arange(24.0).reshape(4, 6)
        sd = collections.OrderedDict([
            ("x", x), ("t", x.t()), ("corner", x[1:, 2:]), ("col", x[:, 3]), ("empty", torch.zeros(0, 5)),
            ("scalar", torch.tensor(3.5, dtype=torch.float64)), ("mask", torch.tensor([True, False, True])),
            ("count", torch.tensor(7)), ("b16", torch.arange(5, dtype=torch.bfloat16)),
            ("i8", torch.tensor([-3, 4], dtype=torch.int8)), ("c", torch.tensor([1 + 2j])),
        ])
        got, _, _ = self.read(craft.saved(sd))
        self.assertSameTensors(got, sd)
        self.assertEqual(got["t"].stride(), (1, 6))
        self.assertEqual(got["corner"].data_ptr(), got["x"].data_ptr() + 8 * 4, "views share their storage")

    def test_module_checkpoint_as_the_fork_saves_it(self):
        model = seed.build(2, "tiny", 5)
        want = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        got, _, info = self.read(craft.saved({"epoch": 3, "ema": model.half(), "model": None,
                                              "train_args": {"save_dir": pathlib.Path("/x")}}))
        self.assertSameTensors(got, want)
        self.assertEqual(info["class"], "model.reference.seed.RTDETRStarNetFreqFusion")
        self.assertEqual(info["epoch"], 3)
        data = module_checkpoint(lambda Det, Conv: {"0": {"weight": torch.ones(2)}, "1": {"bias": torch.zeros(3)}},
                                 names={0: "person", "1": "car"})
        got, names, info = self.read(data)
        self.assertEqual(list(got), ["model.0.weight", "model.1.bias"])
        self.assertEqual(names, {0: "person", 1: "car"})
        self.assertEqual(info["class"], "ultralytics.nn.tasks.DetectionModel")

    def test_deflated_copy_reads_the_same(self):
        sd = {"w": torch.arange(1000.0), "b": torch.ones(3, dtype=torch.int64)}
        data = craft.saved(sd)
        recs = craft.entries(data)
        pkl = recs.pop("data.pkl")
        recs.pop("version")
        deflated = craft.torch_zip(pkl, {k[5:]: v for k, v in recs.items()},
                                   compress={k: zipfile.ZIP_DEFLATED for k in ["data.pkl", *recs]})
        self.assertLess(len(deflated), len(data))
        got, _, _ = self.read(deflated)
        self.assertSameTensors(got, sd)

    def test_file_that_is_not_a_checkpoint(self):
        path = os.path.join(self.dir.name, "fifo.pt")
        os.mkfifo(path)
        with self.assertRaisesRegex(checkpoint.CheckpointError, "not a regular file"):
            checkpoint.read(path)
        buf = io.BytesIO()
        torch.save({"w": torch.ones(1)}, buf, _use_new_zipfile_serialization=False)
        with self.assertRaisesRegex(checkpoint.CheckpointError, "files from torch < 1.6 must be re-saved"):
            self.read(buf.getvalue())


class FuzzTest(unittest.TestCase):
    def test_harness_reads_size_one_dimensions_of_any_stride(self):
        # Found by a 600 s run (--seed 4): an honest (1, 1) tensor with strides (1, 2), which torch.load reads
        # the same, made the harness's byte check raise, counting an accepted read as unexpected.
        from model.reference import fuzz_checkpoint
        w = torch.arange(4, dtype=torch.float32).as_strided((1, 1), (1, 2), 1)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "strided.pt")
            torch.save({"model.p1": w, "model.p2": torch.ones(3)}, path)
            sd, _, _ = checkpoint.read(path)
            self.assertEqual((sd["model.p1"].shape, sd["model.p1"].stride()), ((1, 1), (1, 2)))
            outcome, detail = fuzz_checkpoint.check(path, seed.RTDETRStarNetFreqFusion(2, seed.TINY).eval())
            self.assertEqual(outcome, "accepted", detail)

    def test_bounded_fuzz_run(self):
        # python -m model.reference.fuzz_checkpoint --seconds 1200 is the long run (see README).
        p = subprocess.run([sys.executable, "-m", "model.reference.fuzz_checkpoint", "--seconds", "20", "--json"],
                           cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        r = json.loads(p.stdout)
        self.assertGreaterEqual(r["inputs"], r["bases"], r)  # the unmutated files, then as many mutants as fit
        self.assertGreater(r["accepted"], 0, r)
        self.assertGreater(r["refused"], 0, r)
        self.assertEqual((r["crashes"], r["hangs"], r["unexpected"]), (0, 0, 0), r)
        self.assertLess(r["peak_rss_mb"], MAX_RSS_MB, r)


if __name__ == "__main__":
    unittest.main()
