"""Caches verified, not trusted (issue 24 item 3): every entry of JAX's compilation cache and of
bandit-lab's export cache is sealed with a SHA-256 of its name and bytes
(:func:`bandit_lab.infra.cache.seal`) and written atomically; a swapped, truncated or garbled entry
falls back to tracing/compiling, gives the ``--no-cache`` answer byte for byte, is replaced,
and is reported in one line, once; a read-only cache directory is one line; two processes
filling one cache at once leave it intact."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bandit_lab.infra import cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "examples", "kong_app_b.json")
DAMAGED = "bandit-lab: warning: a damaged cache entry in "


@pytest.fixture(autouse=True)
def fresh_notes(monkeypatch):
    monkeypatch.setattr(cache, "_SAID", set())


# ----------------------------------------------------------------------------- the seal (in process)
def test_seal_round_trip_and_every_damage_is_refused():
    data = bytes(range(256)) * 40
    blob = cache.seal("key-a", data)
    assert cache.unseal("key-a", blob) == data
    assert cache.unseal("key-b", blob) is None                      # swapped: another entry's file
    assert cache.unseal("key-a", blob[:-1]) is None                 # truncated by one byte
    assert cache.unseal("key-a", blob[:20]) is None                 # truncated into the header
    for i in (0, 9, len(cache.MAGIC) + 5, len(blob) // 2, len(blob) - 1):
        g = bytearray(blob)
        g[i] ^= 0x01
        assert cache.unseal("key-a", bytes(g)) is None, i           # one flipped bit anywhere
    assert cache.unseal("key-a", data) is None                      # unsealed (JAX's own format)


def test_verified_cache_replaces_a_damaged_entry_and_says_so_once(tmp_path, capsys):
    vc = cache.VerifiedCache(str(tmp_path))
    vc.put("k1", b"one" * 100)
    vc.put("k2", b"two" * 100)
    assert vc.get("k1") == b"one" * 100 and vc.get("missing") is None
    f1, f2 = tmp_path / "k1-blcache", tmp_path / "k2-blcache"
    b1, b2 = f1.read_bytes(), f2.read_bytes()
    f1.write_bytes(b2)
    f2.write_bytes(b1)                                              # swapped
    assert vc.get("k1") is None and vc.get("k2") is None
    assert not f1.exists() and not f2.exists()                      # removed, so the recompile replaces them
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(DAMAGED)         # one line for two damaged entries
    vc.put("k1", b"new")
    assert vc.get("k1") == b"new"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_read_only_cache_is_one_line(tmp_path, capsys, monkeypatch):
    from bandit_lab.infra import files

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files, "create_exclusive", refuse)  # where every temporary file is created
    vc = cache.VerifiedCache(str(tmp_path))
    for i in range(5):
        vc.put(f"k{i}", b"x")
    err = capsys.readouterr().err
    assert err == f"bandit-lab: warning: the cache directory {tmp_path} is not writable; compiled programs are not saved\n"
    assert list(tmp_path.iterdir()) == []


def test_jax_uses_the_verified_cache():
    from jax._src import compilation_cache as cc

    assert cache._verified_cache_installed()
    assert cc.get_file_cache("/nonexistent-dir-for-test")[0].__class__ is cache.VerifiedCache


# ----------------------------------------------------------------------------- real processes
def _solve(cache_dir=None, no_cache=False):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if cache_dir is not None:
        env["BANDIT_LAB_CACHE_DIR"] = str(cache_dir)
    argv = [sys.executable, "-m", "cli.main", *(["--no-cache"] if no_cache else []), "solve", SPEC, "--json"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _done(p):
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err.decode()[-2000:]
    return out, err.decode()


def _flip(path):
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0xFF
    path.write_bytes(bytes(b))


def test_swapped_truncated_garbled_cache_gives_the_no_cache_answer(tmp_path):
    c = tmp_path / "cache"
    ref = _solve(no_cache=True)
    fill = _solve(c)
    ref_out, ref_err = _done(ref)
    out, err = _done(fill)
    assert out == ref_out and err == ""
    exported = sorted((c / "exported").glob("*.jaxexport"))
    compiled = sorted(c.glob("*-blcache"), key=lambda p: -p.stat().st_size)
    assert len(exported) >= 2 and len(compiled) >= 4, (exported, compiled)
    for a, b in ((exported[0], exported[1]), (compiled[0], compiled[1])):   # swap two entries' files
        ba, bb = a.read_bytes(), b.read_bytes()
        a.write_bytes(bb)
        b.write_bytes(ba)
    with open(compiled[2], "r+b") as fh:                                     # truncate one
        fh.truncate(compiled[2].stat().st_size // 2)
    _flip(compiled[3])                                                       # garble one
    _flip(exported[2] if len(exported) > 2 else exported[0])
    out, err = _done(_solve(c))
    assert out == ref_out                                                    # byte for byte
    assert err.count("\n") == 1 and err.startswith(DAMAGED), err             # one line, once
    out, err = _done(_solve(c))                                              # repaired: silent
    assert out == ref_out and err == "", err


@pytest.mark.slow
def test_two_processes_filling_one_cache(tmp_path):
    c = tmp_path / "cache"
    ref = _done(_solve(no_cache=True))[0]
    for _ in range(2):
        procs = [_solve(c) for _ in range(3)]
        outs = [_done(p) for p in procs]
        assert all(o == (ref, "") for o in outs), outs
    assert [p for p in c.rglob("*") if p.name.endswith(".tmp")] == []
    for p in list(c.glob("*-blcache")) + list((c / "exported").glob("*.jaxexport")):
        name = p.name if p.suffix == ".jaxexport" else p.name[: -len(cache.SUFFIX)]
        assert cache.unseal(name, p.read_bytes()) is not None, p
    assert _done(_solve(c)) == (ref, "")
