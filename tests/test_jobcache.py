"""The loaded job file kept beside the run state: a hit equals a fresh load; any change to
what the load depends on loads afresh; a broken cache never breaks a run."""

import glob
import os
from dataclasses import fields
from types import MappingProxyType

import pytest
from conftest import TESTS, run_cli, run_watching

from orchestrator import jobcache, loader
from orchestrator.errors import JobFileError
from orchestrator.model import Job, Position

ROOT = os.path.dirname(TESTS)
VALID_FILES = sorted(
    glob.glob(os.path.join(ROOT, "jobs", "**", "*.yaml"), recursive=True)
    + glob.glob(os.path.join(TESTS, "loader", "*", "jobs.yaml"))
    + glob.glob(os.path.join(TESTS, "scenarios", "*", "jobs.yaml"))
)


def loadable(path):
    try:
        loader.load(path)
    except JobFileError:
        return False
    return True


@pytest.mark.parametrize("path", [p for p in VALID_FILES if loadable(p)], ids=os.path.relpath)
def test_a_cached_file_equals_a_fresh_load_value_for_value(path, tmp_path):
    cache = str(tmp_path / "cache" / "jobs.yaml.marshal")
    fresh = jobcache.load(path, {"EXTRA": "1"}, cache)  # a miss: loads and keeps it
    assert os.path.exists(cache)
    cached = jobcache._lookup(cache, jobcache._key(path, jobcache._read(path), {"EXTRA": "1"}))
    assert cached is not None and cached == fresh
    assert list(cached.jobs) == list(fresh.jobs)  # file order
    assert isinstance(cached.jobs, MappingProxyType) and isinstance(cached.env, MappingProxyType)
    for name, job in fresh.jobs.items():
        for field in fields(Job):
            mine, theirs = getattr(cached.jobs[name], field.name), getattr(job, field.name)
            assert mine == theirs and type(mine) is type(theirs), (name, field.name)
        assert isinstance(cached.jobs[name].position, Position)


def test_a_second_run_of_an_unchanged_file_does_not_import_pyyaml(tmp_path):
    (tmp_path / "jobs.yaml").write_text("jobs:\n  hello: {run: echo hi > out.txt}\n")
    first = run_watching("yaml", tmp_path, "-o", "none")
    assert first.returncode == 0 and first.stderr.splitlines()[-1] == "yaml", first.stderr
    second = run_watching("yaml", tmp_path, "-o", "none")
    assert second.returncode == 0 and second.stderr.splitlines()[-1] == "no yaml", second.stderr
    assert (tmp_path / "out.txt").read_text() == "hi\n"


def run_writing(tmp_path, *args):
    """Run jobs.yaml in tmp_path; what its job wrote to out.txt."""
    result = run_cli("run", "-f", tmp_path / "jobs.yaml", "-o", "none", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return (tmp_path / "out.txt").read_text()


def test_an_edited_command_runs_as_edited(tmp_path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("jobs:\n  job: {run: echo one > out.txt}\n")
    assert run_writing(tmp_path) == "one\n"
    jobs.write_text("jobs:\n  job: {run: echo two > out.txt}\n")  # same size, maybe same mtime
    assert run_writing(tmp_path) == "two\n"


def test_a_changed_dotenv_file_is_read_again(tmp_path):
    (tmp_path / "jobs.yaml").write_text('dotenv: [.env]\njobs:\n  job: {run: "echo $GREETING > out.txt"}\n')
    assert run_writing(tmp_path) == "\n"  # no .env yet: nothing set
    (tmp_path / ".env").write_text("GREETING=hello\n")
    assert run_writing(tmp_path) == "hello\n"
    (tmp_path / ".env").write_text("GREETING=howdy\n")
    assert run_writing(tmp_path) == "howdy\n"


def test_command_line_variables_are_part_of_the_key(tmp_path):
    (tmp_path / "jobs.yaml").write_text('jobs:\n  job: {run: "echo $MODE > out.txt"}\n')
    assert run_writing(tmp_path, "MODE=debug") == "debug\n"
    assert run_writing(tmp_path, "MODE=release") == "release\n"
    assert run_writing(tmp_path) == "\n"


def test_a_cached_file_made_invalid_is_reported_as_invalid(tmp_path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("jobs:\n  job: {run: echo one > out.txt}\n")
    assert run_writing(tmp_path) == "one\n"
    jobs.write_text("jobs:\n  job: {run: echo one, needs: [nothing]}\n")
    result = run_cli("run", "-f", jobs, cwd=tmp_path)
    assert result.returncode == 2 and "jobs.yaml:2:" in result.stderr and "nothing" in result.stderr


def test_a_corrupt_cache_is_loaded_over(tmp_path):
    (tmp_path / "jobs.yaml").write_text("jobs:\n  job: {run: echo one > out.txt}\n")
    assert run_writing(tmp_path) == "one\n"
    cache = tmp_path / ".orchestrate" / "cache" / "jobs.yaml.marshal"
    for damage in (b"", b"\x00garbage", cache.read_bytes()[:-7]):
        cache.write_bytes(damage)
        assert run_writing(tmp_path) == "one\n"
        assert cache.read_bytes() not in (b"", b"\x00garbage") and len(cache.read_bytes()) > 100


def test_a_dry_run_keeps_no_cache_and_state_dir_is_honoured(tmp_path):
    (tmp_path / "jobs.yaml").write_text("jobs:\n  job: {run: echo one > out.txt}\n")
    result = run_cli("run", "-f", tmp_path / "jobs.yaml", "-n", cwd=tmp_path)
    assert result.returncode == 0 and not (tmp_path / ".orchestrate").exists()
    elsewhere = tmp_path / "state"
    assert run_writing(tmp_path, "--state-dir", elsewhere) == "one\n"
    assert (elsewhere / "cache" / "jobs.yaml.marshal").is_file()


def test_the_key_names_what_the_load_depends_on(tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  job: {run: 'true'}\n")
    data = path.read_bytes()
    key = jobcache._key(str(path), data, {})
    assert key == jobcache._key(str(path), data, {})
    assert key != jobcache._key(str(path), data + b"\n", {})
    assert key != jobcache._key(str(path), data, {"A": "1"})
    assert key != jobcache._key(os.path.relpath(path), data, {})  # the path names it in messages


def test_the_key_follows_orchestrate_and_pyyaml_as_installed(tmp_path, monkeypatch):
    """An upgraded PyYAML (or an edited orchestrate) never reads a cache the old code made:
    both packages' modules (name, mtime, size) are in the key, found without importing yaml."""
    import importlib.util

    yaml_folder = os.path.dirname(importlib.util.find_spec("yaml").origin)
    assert jobcache._yaml_folder() == yaml_folder
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  job: {run: 'true'}\n")
    data = path.read_bytes()
    orchestrate, pyyaml = tmp_path / "orchestrate", tmp_path / "yaml"
    monkeypatch.setattr(jobcache, "_PACKAGE", str(orchestrate))
    monkeypatch.setattr(jobcache, "_yaml_folder", lambda: str(pyyaml))
    for folder in (orchestrate, pyyaml):
        folder.mkdir()
        (folder / "__init__.py").write_text("# version 1\n")
    for folder in (orchestrate, pyyaml):
        before = jobcache._key(str(path), data, {})
        (folder / "__init__.py").write_text("# version 2, longer\n")
        assert jobcache._key(str(path), data, {}) != before, folder
