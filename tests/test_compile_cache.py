"""A run's compile cache (compile_cache.bin): a resume or evaluation in a new process starts
from it, results are bitwise those of a fresh compile, and an unusable file (other torch,
other spec, damaged, truncated) is skipped with one warning line, never a crash."""

import hashlib
import hmac
import io
import json
import os
import random
import shutil
import zipfile
from pathlib import Path

import attrs
import pytest
import torch
from test_compiled import needs_compiler

import tdsl
from tdsl.data import load_data
from tdsl.runs.directories import evaluate_run
from tdsl.spec.load_dump import dump, load
from tdsl.train import compile_cache
from tdsl.train.loops import fit
from tdsl.train.sealed_files import key_path, seal


def tiny(compile: bool = True, hidden: int = 4) -> tdsl.Spec:
    return tdsl.Spec(
        name="cached",
        data=tdsl.Rings(n_positive=40, n_negative=40, split=tdsl.Split(train=0.75, val=0.25)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])],
            layers=[
                tdsl.Layer("linear", out_features=hidden),
                tdsl.Layer("relu"),
                tdsl.Layer("linear", out_features=1),
            ],
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=tdsl.Optimizer("adam", lr=0.05),
        metrics=[tdsl.Metric("accuracy")],
        train=tdsl.Train(epochs=1, batch_size=20, compile=compile),
    )


def test_the_key_names_what_is_compiled_not_how_long_or_where_it_is_kept():
    spec = tiny()
    key = compile_cache.spec_key(spec)
    assert compile_cache.spec_key(load(dump(spec, defaults=True))) == key
    longer = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=30), name="other")
    assert compile_cache.spec_key(longer) == key
    assert compile_cache.spec_key(tiny(hidden=5)) != key
    mode = attrs.evolve(
        spec, train=attrs.evolve(spec.train, compile=tdsl.Compile(mode="max-autotune"))
    )
    assert compile_cache.spec_key(mode) != key


@pytest.fixture(autouse=True)
def own_key(tmp_path, monkeypatch):
    """A seal key of the test's own, not the user's (~/.cache/tdsl/seal.key)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def zipped(key: str, kernels: dict[str, bytes], **header) -> bytes:
    """A cache file's contents as `save` writes them, with no torch entries (those need a
    compile)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        identity = {**compile_cache._identity(), "key": key, **header}
        archive.writestr("header.json", json.dumps(identity))
        archive.writestr("artifacts.bin", b"")
        for name, data in kernels.items():
            archive.writestr("kernels/" + name, data)
    return buffer.getvalue()


def cache_bytes(key: str, kernels: dict[str, bytes], **header) -> bytes:
    return seal(zipped(key, kernels, **header))


@pytest.fixture
def inductor_dir(tmp_path, monkeypatch):
    folder = tmp_path / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder))
    return folder


KERNEL = {"ab/cabcdef.main.so": random.Random(0).randbytes(2000)}  # incompressible


def test_a_usable_file_puts_its_kernels_where_torch_looks(tmp_path, inductor_dir, capsys):
    path = tmp_path / "compile_cache.bin"
    assert not compile_cache.load(path, "k")  # no file: nothing said
    path.write_bytes(cache_bytes("k", KERNEL))
    assert compile_cache.load(path, "k")
    assert (inductor_dir / "ab" / "cabcdef.main.so").read_bytes() == KERNEL["ab/cabcdef.main.so"]
    assert capsys.readouterr().err == ""
    assert key_path().stat().st_mode & 0o077 == 0  # the key is the user's alone


def _flipped(data: bytes) -> bytes:
    at = data.index(b"kernels/") + 100  # inside the kernel's bytes
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def _other_users() -> bytes:
    data = zipped("k", KERNEL)
    return b"TDSLSEAL" + hmac.new(b"x" * 32, data, hashlib.sha256).digest() + data


@pytest.mark.parametrize(
    ("written", "said"),
    [
        (lambda: cache_bytes("k", KERNEL, torch="1.0.0"), "written for torch 1.0.0"),
        (lambda: cache_bytes("other", KERNEL), "written for a different spec"),
        (lambda: cache_bytes("k", KERNEL)[:-700], "not used: damaged, or written by another"),
        (lambda: _flipped(cache_bytes("k", KERNEL)), "not used: damaged, or written by another"),
        (_other_users, "not used: damaged, or written by another user or machine"),
        (lambda: zipped("k", KERNEL), "not used: not a sealed file"),
        (lambda: seal(b"not a zip at all"), "unreadable (BadZipFile"),
        (lambda: cache_bytes("k", {"../../evil.so": b"x"}), "a kernel named outside"),
    ],
    ids=[
        "other-torch",
        "other-spec",
        "truncated",
        "corrupted",
        "other-user",
        "unsealed",
        "garbage",
        "escaping-name",
    ],
)
def test_an_unusable_file_is_skipped_with_one_warning_line(
    tmp_path, inductor_dir, capsys, written, said
):
    path = tmp_path / "compile_cache.bin"
    path.write_bytes(written())
    assert not compile_cache.load(path, "k")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {path}: compile cache "), lines
    assert said in lines[0] and lines[0].endswith("; compiling as usual")
    assert not any(p.is_file() for p in inductor_dir.rglob("*")), "nothing was restored"
    assert not (tmp_path / "evil.so").exists()


def test_without_a_key_nothing_is_written_or_loaded(tmp_path, monkeypatch, capsys):
    path = tmp_path / "compile_cache.bin"
    path.write_bytes(cache_bytes("k", KERNEL))
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))  # no folder can be made
    assert not compile_cache.load(path, "k")
    assert "not used: no key to check it with" in capsys.readouterr().err
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"entries", None))
    assert not compile_cache.save(tmp_path / "new.bin", "k")
    assert not (tmp_path / "new.bin").exists()
    assert "compile cache not written (no key" in capsys.readouterr().err


def test_a_cache_that_cannot_be_written_stops_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"entries", None))
    assert not compile_cache.save(tmp_path / "a-file" / "compile_cache.bin", "k")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "compile cache not written (cannot write" in lines[0], lines


@needs_compiler
def test_a_new_process_compiles_from_the_run_cache_with_identical_results(
    tmp_path, capsys, monkeypatch
):
    """The second fit stands for a resume in a new process: dynamo's and inductor's
    in-memory caches cleared and torch's cache folder empty, only the run's file to go on."""
    from torch._dynamo.utils import counters
    from torch._inductor.utils import fresh_cache

    spec = tiny()
    data = load_data(spec)
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    # Both fits start from a reset dynamo: what earlier tests compiled in this process
    # (its record of which input sizes changed) would otherwise shape the first one only.
    torch._dynamo.reset()
    program = tdsl.compile(spec)
    first = fit(program, program.init(), data, directory=first_dir, progress=False)
    assert first.history[0]["compile_seconds"] > 0
    assert first.history[0]["compile_cached"] is False
    cache = first_dir / compile_cache.CACHE_FILE
    with zipfile.ZipFile(cache) as archive:
        kernels = [n for n in archive.namelist() if n.startswith("kernels/")]
    assert kernels or not Path("/proc").is_dir()  # Linux: the C++ kernels travel along
    logged = json.loads((first_dir / "history.jsonl").read_text().splitlines()[0])
    assert logged["compile_cached"] is False

    second_dir.mkdir()
    shutil.copy(cache, second_dir / compile_cache.CACHE_FILE)
    torch._dynamo.reset()
    from torch._inductor.cpp_builder import CppBuilder

    built = []  # C++ libraries compiled from here on: none, they come from the file
    build = CppBuilder.build

    def counted(builder):
        built.append(builder.get_target_file_path())
        return build(builder)

    monkeypatch.setattr(CppBuilder, "build", counted)
    with fresh_cache():
        fresh = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
        counters.clear()
        again = tdsl.compile(spec)
        second = fit(again, again.init(), data, directory=second_dir, progress=False)
        assert second.history[0]["compile_cached"] is True
        assert counters["inductor"]["fxgraph_cache_hit"] >= 1
        assert counters["inductor"]["fxgraph_cache_miss"] == 0
        for name in kernels:
            assert (fresh / name.removeprefix("kernels/")).is_file()
        assert not [path for path in built if path.endswith(".so")]
    # `tdsl eval` of the run, in another new process: its forward pass compiles from the
    # run's cache as well.
    torch._dynamo.reset()
    with fresh_cache():
        counters.clear()
        evaluated = evaluate_run(first_dir, "last")
        assert counters["inductor"]["fxgraph_cache_hit"] >= 1
        assert counters["inductor"]["fxgraph_cache_miss"] == 0
    assert "warning" not in capsys.readouterr().err
    # Saved again (what still compiled is added), and only this compile's: not the first's too.
    with zipfile.ZipFile(second_dir / compile_cache.CACHE_FILE) as archive:
        assert {n for n in archive.namelist() if n.startswith("kernels/")} <= set(kernels)
    for name, value in first.state.params.items():
        assert torch.equal(second.state.params[name], value), name
    assert second.history[0]["loss"] == first.history[0]["loss"]
    assert evaluated["val"]["loss"] == first.history[0]["val_loss"]


@needs_compiler
def test_a_kernel_this_process_loaded_before_still_goes_into_the_file(tmp_path):
    """Regression: a kernel an earlier program of the process had loaded was handed out
    from memory without asking the builder, so the file left it out and a resume in a new
    process compiled it again (seen with the validation loss compiled into the forward)."""
    spec = tiny(hidden=6)
    data = load_data(spec)
    torch._dynamo.reset()
    earlier = tdsl.compile(spec)
    fit(earlier, earlier.init(), data, progress=False)  # no directory: no file
    torch._dynamo.reset()  # the kernels stay loaded in this process
    program = tdsl.compile(spec)
    fit(program, program.init(), data, directory=tmp_path, progress=False)
    with zipfile.ZipFile(tmp_path / compile_cache.CACHE_FILE) as archive:
        kernels = [n for n in archive.namelist() if n.startswith("kernels/")]
    recorded = compile_cache.RECORDER.kernels(compile_cache._cache_dir())
    assert len(kernels) == len(recorded) >= 1
