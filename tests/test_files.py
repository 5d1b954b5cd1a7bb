"""Files and caches: write_atomic never leaves half a file or replaces a special file; the cache is
private to its user, names its entries safely, and rebuilds an entry that fails its hash."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from tunekit import cache
from tunekit.files import write_atomic

# ---- write_atomic ---------------------------------------------------------------------------------


def test_writes_and_replaces_keeping_only_the_target(tmp_path):
    target = tmp_path / "profile.toml"
    write_atomic(target, "first")
    write_atomic(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.toml"]


def test_bytes_are_written_unchanged(tmp_path):
    data = bytes(range(256)) * 3
    write_atomic(tmp_path / "kernel.cubin", data)
    assert (tmp_path / "kernel.cubin").read_bytes() == data


def test_make_parents_creates_missing_folders(tmp_path):
    target = tmp_path / "deep" / "er" / "profile.toml"
    write_atomic(target, "x", make_parents=True)
    assert target.read_text() == "x"


def test_a_new_file_gets_the_umask_mode_and_a_replaced_file_keeps_its_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.txt", "x")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
        (tmp_path / "new.txt").chmod(0o640)
        write_atomic(tmp_path / "new.txt", "y")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640
    finally:
        os.umask(umask)


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    real = tmp_path / "real.toml"
    real.write_text("old")
    (tmp_path / "link.toml").symlink_to(real)
    write_atomic(tmp_path / "link.toml", "new")
    assert (tmp_path / "link.toml").is_symlink() and real.read_text() == "new"


def test_a_crash_before_the_rename_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "cache.json"
    write_atomic(target, "old")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json"]


def test_a_full_disk_is_an_oserror_naming_the_path_and_keeps_the_old_file(tmp_path):
    """A real failed write: a child process with a 64 KiB file-size limit writes 1 MiB (EFBIG)."""
    target = tmp_path / "report.json"
    target.write_text("old")
    script = textwrap.dedent(
        f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        from tunekit.files import write_atomic
        try:
            write_atomic({str(target)!r}, "x" * 2**20)
        except OSError as exc:
            print(type(exc).__name__, exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("OSError cannot write"), done.stdout + done.stderr
    assert "File too large; the file is unchanged" in done.stdout
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_no_space_left_is_said_in_words(tmp_path, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        OSError, match=r"cannot write .*out.txt: no space left on device; the file is unchanged"
    ):
        write_atomic(tmp_path / "out.txt", "x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("target", "error", "words"),
    [
        ("", ValueError, "got an empty path"),
        ("/dev/full", ValueError, "/dev/full is a device or socket, not a regular file"),
        ("/dev/null", ValueError, "/dev/null is a device or socket, not a regular file"),
        ("{tmp}", ValueError, "is a directory, expected a file path inside it"),
        ("{tmp}/missing/out.toml", FileNotFoundError, "its folder {tmp}/missing does not exist"),
        ("{tmp}/file.txt/out.toml", NotADirectoryError, "a parent of it is a file, not a folder"),
        ("{tmp}/fifo", ValueError, "fifo is a FIFO, not a regular file"),
    ],
    ids=["empty", "dev-full", "dev-null", "directory", "missing-parent", "file-as-parent", "fifo"],
)
def test_targets_that_are_not_regular_files_are_refused_untouched(tmp_path, target, error, words):
    (tmp_path / "file.txt").write_text("keep")
    os.mkfifo(tmp_path / "fifo")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(error, match=words.replace("{tmp}", str(tmp_path))):
        write_atomic(target.replace("{tmp}", str(tmp_path)), "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert stat.S_ISFIFO((tmp_path / "fifo").stat().st_mode) and (tmp_path / "file.txt").read_text() == "keep"


# ---- the cache directory --------------------------------------------------------------------------


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """XDG_CACHE_HOME and the temp dir inside tmp_path, so nothing touches the real caches."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    monkeypatch.setattr(cache.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path


def test_the_cache_directory_is_private_to_its_user(cache_home):
    path = cache.cache_dir("triton")
    assert path == cache_home / "home-cache" / "tunekit" / "triton"
    for folder in (path, path.parent):
        info = folder.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()


def test_a_loose_but_private_directory_is_tightened(cache_home):
    root = cache_home / "home-cache" / "tunekit"
    root.mkdir(parents=True, mode=0o755)
    root.chmod(0o755)
    cache.cache_dir("cubin")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_a_directory_others_can_write_is_refused_and_the_fallback_must_be_private_too(cache_home):
    """As when another user made the shared temp fallback 0777: never used, a clear error."""
    for root in (cache_home / "home-cache" / "tunekit", cache_home / "tmp" / f"tunekit-{os.getuid()}"):
        root.mkdir(parents=True)
        root.chmod(0o777)
    with pytest.raises(cache.CacheError, match=r"mode 777 lets other users write into it") as caught:
        cache.cache_dir("triton")
    assert str(caught.value).count("mode 777") == 2  # both locations named


def test_a_cache_home_that_cannot_be_created_falls_back_to_a_private_temp_directory(cache_home, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/self/no-such-dir")  # mkdir fails, even for root
    path = cache.cache_dir("triton")
    assert path == cache_home / "tmp" / f"tunekit-{os.getuid()}" / "triton"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_read_only_cache_home_falls_back_to_a_private_temp_directory(cache_home, monkeypatch):
    home = cache_home / "home-cache" / "tunekit"
    home.mkdir(parents=True, mode=0o700)
    home.chmod(0o500)
    real_access = os.access
    # as root (this CI) permission bits do not stop writes; report what an ordinary user would see
    monkeypatch.setattr(cache.os, "access", lambda p, m: False if str(p) == str(home) else real_access(p, m))
    try:
        path = cache.cache_dir("triton")
    finally:
        home.chmod(0o700)
    assert path == cache_home / "tmp" / f"tunekit-{os.getuid()}" / "triton"


def test_a_directory_owned_by_another_user_is_refused(cache_home, monkeypatch):
    cache.cache_dir("triton")  # made by this user
    uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: uid + 4242)  # now seen as another user's
    (cache_home / "tmp" / f"tunekit-{uid + 4242}").mkdir(mode=0o700)
    with pytest.raises(cache.CacheError, match=rf"owned by uid {uid}, not by this user") as caught:
        cache.cache_dir("triton")
    assert str(caught.value).count(f"owned by uid {uid}") == 2


def test_a_cache_path_that_is_a_file_is_a_clear_error_when_no_location_works(cache_home):
    (cache_home / "home-cache").write_text("not a folder")
    (cache_home / "tmp" / f"tunekit-{os.getuid()}").write_text("not a folder either")
    with pytest.raises(
        cache.CacheError, match=r"no usable tunekit cache directory: cache directory .*cannot"
    ):
        cache.cache_dir("triton")


@pytest.mark.parametrize(
    "name",
    ["../../outside", "a/b", "", ".hidden", "-rf", "x" * 201, "name\nimport os", "a..b", "tab\tname"],
    ids=[
        "dotdot",
        "slash",
        "empty",
        "leading-dot",
        "leading-dash",
        "too-long",
        "newline",
        "double-dot",
        "tab",
    ],
)
def test_entry_names_accept_canonical_name_characters_only(cache_home, name):
    with pytest.raises(ValueError, match=r"cache entry name: got .*expected letters, digits"):
        cache.entry_path("triton", name, ".py")
    assert not (cache_home / "outside").exists()


def test_kinds_and_suffixes_are_checked(cache_home):
    with pytest.raises(ValueError, match=r"cache kind: got '\.\./x'"):
        cache.cache_dir("../x")
    with pytest.raises(ValueError, match=r"cache entry suffix: got '/\.py'"):
        cache.entry_path("triton", "ok", "/.py")
    assert cache.entry_path("triton", "lstm-both-tritonfused-D32-fp32.bb16", ".py").name.endswith("bb16.py")


# ---- verified entries -----------------------------------------------------------------------------


def test_a_text_entry_reads_back_and_any_change_to_it_reads_as_missing(cache_home):
    path = cache.entry_path("triton", "kernel", ".py")
    cache.write_text_entry(path, "x = 1\n")
    assert path.read_text().startswith("# tunekit-cache sha256=")
    assert cache.read_text_entry(path) == "x = 1\n"
    path.write_bytes(path.read_bytes().replace(b"x = 1", b"x = 2"))
    assert cache.read_text_entry(path) is None
    path.write_bytes(b"\xff\xfe not utf-8")
    assert cache.read_text_entry(path) is None
    assert cache.read_text_entry(path.with_name("absent.py")) is None


def test_cached_text_rebuilds_a_corrupt_entry(cache_home):
    path = cache.entry_path("triton", "kernel", ".py")
    path.write_bytes(b"\x80\x81 garbage from a crashed run")
    assert cache.cached_text(path, lambda: "y = 2\n") == "y = 2\n"
    assert cache.cached_text(path, lambda: pytest.fail("rebuilt a good entry")) == "y = 2\n"


def test_a_binary_entry_keeps_its_bytes_and_a_sidecar_hash(cache_home):
    path = cache.entry_path("cubin", "k", ".cubin")
    data = b"\x7fELF" + bytes(100)
    assert cache.cached_bytes(path, lambda: data) == data
    assert path.read_bytes() == data  # loadable as is
    path.write_bytes(data[:-1])  # truncated
    assert cache.read_binary_entry(path) is None
    assert cache.cached_bytes(path, lambda: data) == data


def test_an_entry_that_is_a_symlink_or_a_fifo_is_not_read(cache_home, tmp_path):
    path = cache.entry_path("triton", "kernel", ".py")
    elsewhere = tmp_path / "planted.py"
    cache.write_text_entry(elsewhere, "import os\n")
    path.symlink_to(elsewhere)
    assert cache.read_text_entry(path) is None
    fifo = cache.entry_path("triton", "fifo", ".py")
    os.mkfifo(fifo)
    assert cache.read_text_entry(fifo) is None  # and it does not block


def test_an_entry_that_cannot_be_written_is_a_cache_error(cache_home):
    path = cache.entry_path("triton", "kernel", ".py")
    path.mkdir()  # a directory where the entry should be: write_atomic refuses it
    with pytest.raises(
        cache.CacheError, match=r"cache entry .*kernel.py: cannot write it \(path: .* is a directory"
    ):
        cache.write_text_entry(path, "x = 1\n")
