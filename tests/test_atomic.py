"""restore.atomic, the one atomic writer: all of the file or none of it, no temporary file
left behind, the usual modes."""

import os
import stat

import pytest

from restore.atomic import atomic_path, write_bytes


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_usual_mode_and_no_temporary_file_stays(tmp_path):
    umask = os.umask(0o022)
    try:
        write_bytes(tmp_path / "a.bin", b"abc")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert _mode(tmp_path / "a.bin") == 0o644  # not mkstemp's 0600
    assert os.listdir(tmp_path) == ["a.bin"]


def test_a_writer_that_swaps_in_its_own_0600_file_still_gives_the_usual_mode(tmp_path):
    # safetensors 0.8 writes to a temporary of its own (0600) and renames it over the name
    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "m.bin") as tmp:
            own = tmp_path / "own"
            own.write_bytes(b"abc")
            own.chmod(0o600)
            os.replace(own, tmp)
    finally:
        os.umask(umask)
    assert _mode(tmp_path / "m.bin") == 0o644 and os.listdir(tmp_path) == ["m.bin"]


def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    target.chmod(0o600)
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o600


@pytest.mark.parametrize("exc", [ValueError("encoder failed"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_target_as_it_was(tmp_path, exc):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(exc)):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".a.bin.")
            tmp.write_bytes(b"half")
            raise exc
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_writers_that_take_a_name(tmp_path):
    import torch

    from restore.checkpoint import read_checkpoint

    target = tmp_path / "t.pt"
    with atomic_path(target) as tmp:
        torch.save({"w": torch.ones(2)}, tmp)
    assert torch.equal(read_checkpoint(target)["w"], torch.ones(2))


def test_a_missing_folder_is_an_os_error_and_creates_nothing(tmp_path):
    with pytest.raises(OSError):
        write_bytes(tmp_path / "no" / "a.bin", b"x")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "kill") or os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_to_the_process_waits_for_the_end_of_a_held_block(signame):
    # a real signal to the whole process while another thread lives (as torch's and the
    # reader's do in restore): the kernel may hand it to that thread, and Python raises in
    # the main thread all the same; it must come after the block, not inside it
    import signal
    import threading
    import time

    from restore.atomic import _signals_held

    sig = getattr(signal, signame)

    class Came(Exception):
        pass

    def handler(signum, frame):
        raise Came(signum)

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    previous = signal.signal(sig, handler)
    steps = []
    try:
        with pytest.raises(Came):
            with _signals_held():
                os.kill(os.getpid(), sig)
                time.sleep(0.2)  # time enough for it to land, were it not held
                steps.append("block ended")
        assert steps == ["block ended"]
        assert signal.getsignal(sig) is handler  # the handler is back
    finally:
        signal.signal(sig, previous)
        stop.set()
        other.join()
