"""Run directories are claimed, not shared: concurrent runs into one folder, unique default
names, finished runs and the user's own folders never overwritten, no symlinked folders."""

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tdsl
from tdsl.runs.cli import main
from tdsl.runs.directories import RunError, run
from tdsl.runs.resuming import resume
from tdsl.runs.run_lock import claim_run

ROOT = Path(__file__).resolve().parents[1]


def tiny(**train) -> tdsl.Spec:
    return tdsl.Spec(
        name="tiny",
        data=tdsl.Rings(n_positive=20, n_negative=20, split=tdsl.Split(train=0.5, val=0.5)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])], layers=[tdsl.Layer("linear", out_features=1)]
        ),
        loss=tdsl.Loss("bce_with_logits"),
        optimizer=tdsl.Optimizer("sgd", lr=0.1),
        train=tdsl.Train(**{"epochs": 1, "batch_size": 20, **train}),
    )


CLAIM = """
import sys, time
from pathlib import Path
from tdsl.runs.run_lock import RunError, claim_new_run
out, go = Path(sys.argv[1]), Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
try:
    lock = claim_new_run(out)
except RunError as exc:
    print("refused:", exc)
else:
    (out / "spec.yaml").write_text(sys.argv[3])  # what a run writes first
    time.sleep(0.5)
    lock.release()
    print("claimed")
"""


def test_of_eight_processes_claiming_one_folder_exactly_one_gets_it(tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM, str(out), str(go), str(i)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(8)
    ]
    time.sleep(0.2)
    go.touch()  # all at once
    said = [p.communicate(timeout=60)[0].strip() for p in processes]
    assert sorted(said)[0] == "claimed" and said.count("claimed") == 1, said
    for line in said:
        if line != "claimed":
            assert "in use by another tdsl process (pid" in line or "already holds a run" in line
    assert (out / "spec.yaml").read_text() == str(said.index("claimed"))


def _in_threads(count, job):
    results = [None] * count

    def one(i):
        try:
            results[i] = job(i)
        except RunError as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_eight_runs_into_one_out_one_trains_the_others_are_refused(tmp_path):
    spec = tiny()
    results = _in_threads(8, lambda i: run(spec, tmp_path / "out", progress=False))
    trained = [r for r in results if not isinstance(r, RunError)]
    refused = [str(r) for r in results if isinstance(r, RunError)]
    assert len(trained) == 1 and len(refused) == 7, results
    assert all("in use by another" in r or "already holds a run" in r for r in refused)


def test_eight_runs_of_one_spec_started_together_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tiny()
    results = _in_threads(8, lambda i: run(spec, progress=False))
    assert not [r for r in results if isinstance(r, RunError)], results
    folders = {r.directory for r in results}
    assert len(folders) == 8 and all((f / "final.json").is_file() for f in folders)


def test_a_finished_run_without_last_checkpoint_is_not_overwritten(tmp_path):
    out = tmp_path / "done"
    run(tiny(checkpoint=tdsl.Checkpoint(save_last=False)), out, progress=False)
    spec_text = (out / "spec.yaml").read_text()
    with pytest.raises(RunError, match="already holds a run .*it has finished; choose another"):
        run(tiny(epochs=2), out, progress=False)
    assert (out / "spec.yaml").read_text() == spec_text


def test_a_folder_of_the_users_own_files_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    spec = ROOT / "specs" / "ring_dnn.yaml"
    assert main(["run", str(spec), "--out", str(out), "--set", "train.epochs=1"]) == 1
    err = capsys.readouterr().err
    assert "is not empty and holds no run ('thesis.tex')" in err and "choose another --out" in err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_a_folder_holding_only_a_sweeps_logs_takes_the_run(tmp_path):
    out = tmp_path / "trial-000"
    out.mkdir()
    (out / "stdout.log").write_text("")
    (out / "stderr.log").write_text("")
    assert run(tiny(), out, progress=False).history


def test_resume_is_refused_while_another_process_writes_the_run(tmp_path):
    out = tmp_path / "r"
    run(tiny(), out, progress=False)
    lock = claim_run(out)  # another writer holds it
    try:
        with pytest.raises(RunError, match=f"in use by another tdsl process \\(pid {os.getpid()}"):
            resume(out, progress=False)
    finally:
        lock.release()
    assert resume(out, progress=False).history  # released: it can go on


@pytest.mark.parametrize("folder", ["checkpoints", "tensorboard"])
def test_resume_refuses_a_symlinked_run_folder(tmp_path, folder):
    out, elsewhere = tmp_path / "r", tmp_path / "elsewhere"
    run(tiny(epochs=1), out, progress=False)
    elsewhere.mkdir()
    link = out / folder
    if link.exists():
        (link).rename(elsewhere / folder)
        link.symlink_to(elsewhere / folder)
    else:
        link.symlink_to(elsewhere)
    with pytest.raises(RunError, match=f"{folder} is a symbolic link .*inside its own directory"):
        resume(out, progress=False)


def test_a_new_run_refuses_a_symlinked_checkpoints_folder(tmp_path):
    out, elsewhere = tmp_path / "r", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "checkpoints").symlink_to(elsewhere)
    with pytest.raises(RunError, match="already holds a run"):
        run(tiny(), out, progress=False)
    assert list(elsewhere.iterdir()) == []


def test_fit_refuses_a_symlinked_checkpoints_folder(tmp_path):
    from tdsl.data import load_data
    from tdsl.train.loops import fit
    from tdsl.train.program import compile
    from tdsl.train.standard import DirectoryError

    spec, elsewhere = tiny(), tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "checkpoints").symlink_to(elsewhere)
    program = compile(spec)
    with pytest.raises(DirectoryError, match="checkpoints is a symbolic link"):
        fit(program, program.init(), load_data(spec), directory=tmp_path / "d")
    assert list(elsewhere.iterdir()) == []


HOLD = """
import sys, time
from pathlib import Path
from tdsl.runs.run_lock import claim_new_run
lock = claim_new_run(Path(sys.argv[1]))
(Path(sys.argv[1]) / "spec.yaml").write_text("")
print("claimed", flush=True)
time.sleep(600)
"""


def test_a_killed_owners_lock_is_taken_over_by_resume(tmp_path):
    import signal

    from tdsl.runs.run_lock import LOCK_FILE

    out = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    owner = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert owner.stdout.readline().strip() == "claimed"
    with pytest.raises(RunError, match=f"in use by another tdsl process \\(pid {owner.pid} "):
        claim_run(out)
    owner.send_signal(signal.SIGKILL)
    owner.communicate(timeout=30)
    assert (out / LOCK_FILE).read_text().startswith(f"pid {owner.pid} ")  # stale, left behind
    claim_run(out).release()  # the kernel dropped the dead owner's lock: taken over


def test_a_sweep_reruns_an_attempt_that_ended_before_its_first_checkpoint(tmp_path, monkeypatch):
    from tdsl.runs import sweep

    (tmp_path / "tiny.yaml").write_text("name: t\n")
    trial = tmp_path / "s" / "trial-000"
    sweep.create_sweep(tmp_path / "s", tmp_path / "tiny.yaml", [["a=1"]])
    trial.mkdir(parents=True)
    for name in ("spec.yaml", "summary.txt", "stdout.log"):
        (trial / name).write_text("first attempt")
    (trial / "checkpoints").mkdir()
    listing = "import os, sys; print(sorted(os.listdir(sys.argv[1])))"
    monkeypatch.setattr(
        sweep._Runner, "command", lambda self, t, d: [sys.executable, "-c", listing, str(d)]
    )
    sweep.run_sweep(tmp_path / "s", stream=io.StringIO())
    # Its own files went; the logs (appended to) and the lock stayed.
    said = (trial / "stdout.log").read_text()
    assert said == "first attempt['.tdsl.lock', 'stderr.log', 'stdout.log']\n"
