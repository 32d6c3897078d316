"""Staging submissions: hostile zips and folders are unpacked inside the target or not at all.

Each hostile test also checks that nothing was written outside the target folder.
"""

import os
import socket
import stat
import zipfile
from pathlib import Path

import pytest

from dlvc.course.grader.submission import (
    Limits,
    StagedSubmission,
    SubmissionError,
    find_package_root,
    stage,
    submission_name,
    unpack_zip,
)

INIT = "dlvc/__init__.py"
SMALL = Limits(max_entries=20, max_total_bytes=8 * 2**20, max_file_bytes=2 * 2**20)


def make_zip(path: Path, entries: dict[str, bytes | str], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip at path holding entries (name -> content; a name ending in '/' is a folder)."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


def make_zip_of_infos(path: Path, entries: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    """A zip at path holding hand-made ZipInfo entries, to craft what a hostile zipper writes."""
    with zipfile.ZipFile(path, "w") as archive:
        for info, content in entries:
            archive.writestr(info, content)
    return path


def entry(name: str, mode: int | None = None) -> zipfile.ZipInfo:
    """A ZipInfo named name (kept as given, NUL and all), with Unix mode bits in external_attr."""
    info = zipfile.ZipInfo("placeholder")
    info.filename = name
    if mode is not None:
        info.external_attr = mode << 16
    return info


def patch_bytes(path: Path, old: bytes, new: bytes) -> None:
    """Replace old by new (same length) everywhere in the file: how tests write raw names zipfile would re-encode."""
    assert len(old) == len(new), "a patch must keep the length"
    data = path.read_bytes()
    assert old in data, f"{old!r} is not in {path}"
    path.write_bytes(data.replace(old, new))


def patch_first_central_entry(path: Path, offset: int, value: int, size: int) -> None:
    """Overwrite a field of the zip's first central-directory entry (what zipfile reads first), little-endian.

    Offsets: 8 the flag bits, 10 the compression method, 24 the uncompressed size.
    """
    with zipfile.ZipFile(path) as archive:
        start = archive.start_dir
    data = bytearray(path.read_bytes())
    data[start + offset : start + offset + size] = value.to_bytes(size, "little")
    path.write_bytes(bytes(data))


def files_outside(tmp_path: Path, target: Path) -> set[str]:
    """Every path under tmp_path that is not under target."""
    return {str(path) for path in tmp_path.rglob("*") if target not in path.parents and path != target}


def tree(folder: Path) -> set[str]:
    """Every path under folder, relative and posix, folders ending in '/'."""
    return {path.relative_to(folder).as_posix() + ("/" if path.is_dir() else "") for path in folder.rglob("*")}


def unpack_hostile(tmp_path: Path, zip_path: Path, limits: Limits = Limits()) -> tuple[Path, list[str]]:
    """Unpack zip_path into tmp_path/target and check that nothing appeared outside the target."""
    target = tmp_path / "target"
    before = files_outside(tmp_path, target)
    notes = unpack_zip(zip_path, target, limits)
    assert files_outside(tmp_path, target) == before, "unpacking wrote something outside the target"
    return target, notes


def a_package(folder: Path, files: dict[str, str] | None = None) -> Path:
    """A submission folder holding dlvc/__init__.py and files (relative path -> text)."""
    for relative, text in {INIT: "", **(files or {})}.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


# Paths: no entry lands outside the target.


@pytest.mark.parametrize("name", ["../escaped.txt", "..\\escaped.txt", "dlvc/../../escaped.txt"])
def test_entry_climbing_out_with_dot_dot_is_skipped_with_a_note(tmp_path, name):
    zip_path = make_zip(tmp_path / "s.zip", {name: "owned", INIT: ""})
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert not (tmp_path / "escaped.txt").exists(), f"{name!r} was written outside the target"
    assert f"skipped '{name}': a path outside the submission" in notes, f"no note for {name!r}: {notes}"
    assert tree(target) == {"dlvc/", INIT}, f"unexpected files: {tree(target)}"


def test_absolute_entry_is_skipped_and_not_written_where_it_points(tmp_path):
    outside = tmp_path / "outside" / "absolute.txt"
    zip_path = make_zip(tmp_path / "s.zip", {str(outside): "owned"})
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert not outside.exists(), "an absolute entry was written at its absolute path"
    assert notes == [f"skipped '{outside}': an absolute path, outside the submission"], f"unexpected notes: {notes}"
    assert tree(target) == set(), f"an absolute entry was written inside the target: {tree(target)}"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("C:\\x.txt", "a Windows drive path"),
        ("c:x.txt", "a Windows drive path"),
        ("\\\\server\\share\\x.txt", "an absolute path"),
        ("\\x.txt", "an absolute path"),
    ],
)
def test_windows_absolute_and_drive_paths_are_skipped(tmp_path, name, reason):
    zip_path = make_zip(tmp_path / "s.zip", {name: "owned"})
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert tree(target) == set(), f"{name!r} was written: {tree(target)}"
    assert notes == [f"skipped '{name}': {reason}, outside the submission"], f"unexpected notes: {notes}"


def test_backslashes_separate_folders_like_slashes(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc\\__init__.py": "", "dlvc\\models\\unet.py": "UNET = 1"})
    target, notes = unpack_hostile(tmp_path, zip_path)
    unet = target / "dlvc" / "models" / "unet.py"
    assert unet.is_file() and unet.read_text() == "UNET = 1", f"Windows paths were not split: {tree(target)}"
    assert notes == [], f"a Windows path should need no note: {notes}"


def test_extractall_is_never_called(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("ZipFile.extractall was called")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", refuse)
    monkeypatch.setattr(zipfile.ZipFile, "extract", refuse)
    target, _ = unpack_hostile(tmp_path, make_zip(tmp_path / "s.zip", {INIT: "", "dlvc/a.py": "A = 1"}))
    assert (target / "dlvc" / "a.py").read_text() == "A = 1", "the entry was not written"


# Links and special files.


def test_symlink_entry_is_skipped_with_a_note(tmp_path):
    zip_path = make_zip_of_infos(tmp_path / "s.zip", [(entry("dlvc/passwd", mode=0o120777), b"/etc/passwd")])
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert not os.path.lexists(target / "dlvc" / "passwd"), "a symlink entry was written"
    assert notes == ["skipped 'dlvc/passwd': a symbolic link (only regular files and folders are unpacked)"], notes


def test_entries_below_a_skipped_symlink_land_in_a_real_folder_inside_the_target(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    zip_path = make_zip_of_infos(
        tmp_path / "s.zip",
        [(entry("escape", mode=0o120777), str(outside).encode()), (entry("escape/owned.txt"), b"owned")],
    )
    target, _ = unpack_hostile(tmp_path, zip_path)
    assert not (outside / "owned.txt").exists(), "a file was written through a symlink entry"
    assert (target / "escape").is_dir() and not (target / "escape").is_symlink(), "escape/ should be a real folder"
    assert (target / "escape" / "owned.txt").read_text() == "owned", "the file below the skipped link is missing"


@pytest.mark.parametrize(
    "file_type, what",
    [
        (stat.S_IFIFO, "a FIFO (named pipe)"),
        (stat.S_IFCHR, "a device file"),
        (stat.S_IFBLK, "a device file"),
        (stat.S_IFSOCK, "a socket"),
    ],
)
def test_special_file_entries_are_skipped_with_a_note(tmp_path, file_type, what):
    zip_path = make_zip_of_infos(tmp_path / "s.zip", [(entry("dlvc/special", mode=file_type | 0o644), b"")])
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert not os.path.lexists(target / "dlvc" / "special"), f"{what} was written"
    assert notes == [f"skipped 'dlvc/special': {what} (only regular files and folders are unpacked)"], notes


# Limits.


def test_more_entries_than_the_limit_is_a_submission_error(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {f"dlvc/m{index}.py": "" for index in range(4)})
    with pytest.raises(SubmissionError, match="the zip has 4 entries, more than the limit of 3"):
        unpack_hostile(tmp_path, zip_path, Limits(max_entries=3))
    assert tree(tmp_path / "target") == set(), "entries were written before the count was checked"


def test_zip_bomb_stops_at_the_total_limit_without_writing_past_it(tmp_path):
    zip_path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("dlvc/zeros.bin", "w") as out:
            for _ in range(300):
                out.write(bytes(2**20))
    assert zip_path.stat().st_size < 2 * 2**20, "the test's bomb should be small on disk"
    limits = Limits(max_total_bytes=4 * 2**20, max_file_bytes=300 * 2**20)
    with pytest.raises(SubmissionError, match=r"^the submission unpacks to more than 4 MiB: a zip bomb\?$"):
        unpack_hostile(tmp_path, zip_path, limits)
    written = sum(path.stat().st_size for path in (tmp_path / "target").rglob("*") if path.is_file())
    assert written <= limits.max_total_bytes, f"{written} bytes were written, past the limit"


def test_total_limit_adds_up_all_files(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {f"dlvc/part{index}.bin": bytes(1500) for index in range(3)})
    with pytest.raises(SubmissionError, match="unpacks to more than 4000 bytes"):
        unpack_hostile(tmp_path, zip_path, Limits(max_total_bytes=4000, max_file_bytes=2000))


def test_one_file_over_the_file_limit_is_a_submission_error_naming_it(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc/weights.pt": bytes(3 * 2**20)})
    with pytest.raises(SubmissionError, match="'dlvc/weights.pt' is larger than 2 MiB, the limit for one file"):
        unpack_hostile(tmp_path, zip_path, SMALL)
    written = (tmp_path / "target" / "dlvc" / "weights.pt").stat().st_size
    assert written <= SMALL.max_file_bytes, f"{written} bytes were written, past the file limit"


def test_sizes_are_counted_while_writing_not_read_from_the_header(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc/small.py": "X = 1"}, compression=zipfile.ZIP_STORED)
    patch_first_central_entry(zip_path, offset=24, value=0xFFFFFFF0, size=4)
    target, _ = unpack_hostile(tmp_path, zip_path)
    assert (target / "dlvc" / "small.py").read_text() == "X = 1", "a header claiming 4 GiB stopped a 5-byte file"


def test_nested_zip_is_kept_as_a_file_and_not_unpacked(tmp_path):
    inner = make_zip(tmp_path / "inner.zip", {"../../escaped.txt": "owned"}).read_bytes()
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc/inner.zip": inner})
    target, _ = unpack_hostile(tmp_path, zip_path)
    assert tree(target) == {"dlvc/", "dlvc/inner.zip"}, f"the nested zip was unpacked: {tree(target)}"
    assert (target / "dlvc" / "inner.zip").read_bytes() == inner, "the nested zip was changed"


def test_a_file_that_is_not_a_zip_is_a_submission_error(tmp_path):
    not_a_zip = tmp_path / "s.zip"
    not_a_zip.write_bytes(b"%PDF-1.7 this is a report, not a zip")
    with pytest.raises(SubmissionError, match="'s.zip' is not a readable zip file"):
        unpack_hostile(tmp_path, not_a_zip)


def test_a_truncated_zip_is_a_submission_error(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {INIT: "", "dlvc/a.py": "A = 1" * 100})
    zip_path.write_bytes(zip_path.read_bytes()[:-30])
    with pytest.raises(SubmissionError, match="is not a readable zip file"):
        unpack_hostile(tmp_path, zip_path)


def test_corrupt_entry_data_is_a_submission_error_naming_the_entry(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc/a.py": "A = 1\n"}, compression=zipfile.ZIP_STORED)
    patch_bytes(zip_path, b"A = 1\n", b"A = 2\n")
    with pytest.raises(SubmissionError, match=r"the zip is corrupt: cannot read 'dlvc/a.py' \(Bad CRC-32"):
        unpack_hostile(tmp_path, zip_path)


def test_encrypted_entry_is_skipped_with_a_note(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc/secret.py": "garbled"}, compression=zipfile.ZIP_STORED)
    patch_first_central_entry(zip_path, offset=8, value=0x1, size=2)  # bit 0: encrypted
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert not (target / "dlvc" / "secret.py").exists(), "an encrypted entry was written"
    assert notes == ["skipped 'dlvc/secret.py': encrypted (password-protected); zip it again without a password"], notes


def test_entry_with_an_unknown_compression_method_is_skipped_with_a_note(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc/a.py": "A = 1"}, compression=zipfile.ZIP_STORED)
    patch_first_central_entry(zip_path, offset=10, value=9, size=2)  # 9: Deflate64
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert not (target / "dlvc" / "a.py").exists(), "an unreadable entry was written"
    assert notes and notes[0].startswith("skipped 'dlvc/a.py': compressed with method 9"), f"unexpected notes: {notes}"


# Names.


def test_utf8_name_without_the_utf8_flag_is_recovered(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc/cafXX.py": "X = 1"})
    patch_bytes(zip_path, b"dlvc/cafXX.py", "dlvc/café.py".encode("utf-8"))
    with zipfile.ZipFile(zip_path) as archive:
        assert not archive.infolist()[0].flag_bits & 0x800, "the test zip should not carry the UTF-8 flag"
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert (target / "dlvc" / "café.py").read_text() == "X = 1", f"the UTF-8 name was not recovered: {tree(target)}"
    assert notes == [], f"a recovered name needs no note: {notes}"


def test_name_that_is_not_utf8_is_renamed_with_a_note(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc/cafX.py": "X = 1"})
    patch_bytes(zip_path, b"dlvc/cafX.py", b"dlvc/caf\x82.py")  # cp437 for 'caf\u00e9.py'
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert tree(target) == {"dlvc/", "dlvc/caf_.py"}, f"the undecodable byte was not replaced: {tree(target)}"
    assert notes == ["renamed 'dlvc/caf\\x82.py' to 'dlvc/caf_.py': the name is not valid UTF-8"], notes


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\n", "\x1b", "\u202e"])
def test_names_with_control_characters_are_sanitised_with_a_note(tmp_path, bad):
    zip_path = make_zip_of_infos(tmp_path / "s.zip", [(entry(f"dlvc/a{bad}b.py"), b"X = 1")])
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert tree(target) == {"dlvc/", "dlvc/a_b.py"}, f"{bad!r} was not replaced by '_': {tree(target)}"
    assert notes == [
        f"renamed 'dlvc/a{ascii(bad)[1:-1]}b.py' to 'dlvc/a_b.py': the name holds control or invisible characters"
    ], f"unexpected notes: {notes}"


def test_later_entry_mapping_to_the_same_path_is_skipped_with_a_note(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc/a.py": "FIRST = 1", "dlvc\\a.py": "SECOND = 1"})
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert (target / "dlvc" / "a.py").read_text() == "FIRST = 1", "the later entry overwrote the first"
    assert notes == ["skipped 'dlvc\\a.py': the same path as an earlier entry"], f"unexpected notes: {notes}"


def test_entry_below_a_path_that_is_a_file_is_skipped_with_a_note(tmp_path):
    zip_path = make_zip(tmp_path / "s.zip", {"dlvc/a": "FILE", "dlvc/a/b.py": "X = 1"})
    target, notes = unpack_hostile(tmp_path, zip_path)
    assert (target / "dlvc" / "a").read_text() == "FILE", "the earlier file was replaced"
    assert notes == ["skipped 'dlvc/a/b.py': 'dlvc/a' is already a file"], f"unexpected notes: {notes}"


# Modes.


def test_files_get_mode_644_and_folders_755_whatever_the_zip_says(tmp_path):
    zip_path = make_zip_of_infos(
        tmp_path / "s.zip",
        [(entry("dlvc/", mode=stat.S_IFDIR | 0o777), b""), (entry("dlvc/run.sh", mode=stat.S_IFREG | 0o6777), b"x")],
    )
    old_umask = os.umask(0o077)
    try:
        target, _ = unpack_hostile(tmp_path, zip_path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((target / "dlvc").stat().st_mode) == 0o755, "the folder should have mode 0o755"
    assert stat.S_IMODE((target / "dlvc" / "run.sh").stat().st_mode) == 0o644, "the file should have mode 0o644"


def test_unpacking_into_a_folder_that_holds_files_is_refused(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="is not empty"):
        unpack_zip(make_zip(tmp_path / "s.zip", {INIT: ""}), target)


# Folders given as submissions.


def test_symlinks_in_a_folder_are_skipped_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("secret")
    source = a_package(tmp_path / "group_7")
    (source / "dlvc" / "key.txt").symlink_to(secret / "key.txt")
    (source / "dlvc" / "elsewhere").symlink_to(secret)
    staged = stage(source, tmp_path / "work")
    copied = tree(tmp_path / "work")
    assert not any("key.txt" in path or "elsewhere" in path for path in copied), f"a link was followed: {copied}"
    assert "skipped 'dlvc/elsewhere': a symbolic link (only regular files and folders are unpacked)" in staged.notes
    assert "skipped 'dlvc/key.txt': a symbolic link (only regular files and folders are unpacked)" in staged.notes


def test_special_files_in_a_folder_are_skipped_not_opened(tmp_path):
    source = a_package(tmp_path / "group_7")
    os.mkfifo(source / "dlvc" / "pipe")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(source / "s.sock"))
        staged = stage(source, tmp_path / "work")
    assert "skipped 'dlvc/pipe': a FIFO (named pipe) (only regular files and folders are unpacked)" in staged.notes
    assert "skipped 's.sock': a socket (only regular files and folders are unpacked)" in staged.notes
    assert not os.path.lexists(tmp_path / "work" / "unpacked" / "dlvc" / "pipe"), "the FIFO was copied"


def test_a_folder_is_copied_not_used_in_place(tmp_path):
    source = a_package(tmp_path / "group_7", {"dlvc/a.py": "A = 1"})
    staged = stage(source, tmp_path / "work")
    assert source not in staged.root.parents and staged.root != source, "the staged root is the submission itself"
    (staged.root / "dlvc" / "a.py").write_text("CHANGED = 1")
    assert (source / "dlvc" / "a.py").read_text() == "A = 1", "changing the staged copy changed the submission"


def test_a_folder_with_more_entries_than_the_limit_is_a_submission_error(tmp_path):
    source = a_package(tmp_path / "group_7", {f"dlvc/m{index}.py": "" for index in range(5)})
    with pytest.raises(SubmissionError, match="the submission folder holds more than 4 files and folders"):
        stage(source, tmp_path / "work", limits=Limits(max_entries=4))


def test_a_folder_with_a_file_over_the_file_limit_is_a_submission_error(tmp_path):
    source = a_package(tmp_path / "group_7")
    (source / "dlvc" / "weights.pt").write_bytes(bytes(3000))
    with pytest.raises(SubmissionError, match="'dlvc/weights.pt' is larger than 2000 bytes, the limit for one file"):
        stage(source, tmp_path / "work", limits=Limits(max_file_bytes=2000))


def test_a_folder_over_the_total_limit_is_a_submission_error(tmp_path):
    source = a_package(tmp_path / "group_7", {f"dlvc/m{index}.py": "#" * 1500 for index in range(3)})
    with pytest.raises(SubmissionError, match="the submission folder holds more than 4000 bytes"):
        stage(source, tmp_path / "work", limits=Limits(max_total_bytes=4000))


def test_a_file_name_in_a_folder_that_is_not_utf8_is_renamed_with_a_note(tmp_path):
    source = a_package(tmp_path / "group_7")
    with open(os.path.join(os.fsencode(source / "dlvc"), b"caf\xe9.py"), "w") as file:
        file.write("X = 1")
    staged = stage(source, tmp_path / "work")
    assert (staged.root / "dlvc" / "caf_.py").read_text() == "X = 1", f"not renamed: {tree(staged.root)}"
    assert "renamed 'dlvc/caf\\xe9.py' to 'dlvc/caf_.py': the name is not valid UTF-8" in staged.notes, staged.notes


# Staging.


def test_staged_root_holds_only_the_dlvc_package(tmp_path):
    planted = ["conftest.py", "pytest.ini", "sitecustomize.py", "evil.pth", "results.json", "torch.py", "report.pdf"]
    source = a_package(tmp_path / "group_7", {name: "import os" for name in planted} | {"dlvc/metrics.py": "M = 1"})
    staged = stage(source, tmp_path / "work")
    assert tree(staged.root) == {"dlvc/", INIT, "dlvc/metrics.py"}, f"the staged root holds more: {tree(staged.root)}"
    assert staged.root == tmp_path / "work" / "package", f"root is {staged.root}, expected workdir/package"


def test_compiled_python_is_left_out_of_the_staged_package_with_one_note(tmp_path):
    source = a_package(
        tmp_path / "group_7",
        {
            "dlvc/__pycache__/metrics.cpython-311.pyc": "",
            "dlvc/models/__pycache__/unet.cpython-311.pyc": "",
            "dlvc/old.pyc": "",
        },
    )
    staged = stage(source, tmp_path / "work")
    assert tree(staged.root) == {"dlvc/", INIT, "dlvc/models/"}, f"compiled Python was staged: {tree(staged.root)}"
    compiled_notes = [note for note in staged.notes if "__pycache__" in note]
    assert len(compiled_notes) == 1, f"expected one note about compiled Python, got {staged.notes}"


def test_zip_with_one_top_folder_is_staged_from_inside_it(tmp_path):
    zip_path = make_zip(
        tmp_path / "Group 7.zip",
        {
            "group_7/dlvc/__init__.py": "",
            "group_7/report.pdf": "%PDF",
            "__MACOSX/group_7/._report.pdf": "",
            ".DS_Store": "",
        },
    )
    staged = stage(zip_path, tmp_path / "work", wanted_files=["report.pdf"])
    assert staged == StagedSubmission(
        name="Group_7",
        source=zip_path,
        root=tmp_path / "work" / "package",
        present=["report.pdf"],
        missing=[],
        notes=[],
    ), f"unexpected staging: {staged}"
    assert tree(staged.root) == {"dlvc/", INIT}, f"unexpected staged files: {tree(staged.root)}"


def test_wanted_files_and_folders_are_sorted_into_present_and_missing(tmp_path):
    source = a_package(tmp_path / "group_7", {"report.pdf": "%PDF", "figures/curves.png": "png", "train.py": ""})
    wanted = ["report.pdf", "figures/", "train.py/", "notes.md", "logs/"]
    staged = stage(source, tmp_path / "work", wanted_files=wanted)
    assert staged.present == ["report.pdf", "figures/"], f"present: {staged.present}"
    assert staged.missing == ["train.py/", "notes.md", "logs/"], f"missing: {staged.missing} (a file is not a folder)"


def test_an_existing_workdir_is_emptied_first(tmp_path):
    workdir = tmp_path / "work"
    (workdir / "package" / "dlvc").mkdir(parents=True)
    (workdir / "package" / "dlvc" / "stale.py").write_text("STALE = 1")
    (workdir / "results.json").write_text("{}")
    staged = stage(a_package(tmp_path / "group_7"), workdir)
    assert tree(staged.root) == {"dlvc/", INIT}, f"files from before survived: {tree(staged.root)}"
    assert not (workdir / "results.json").exists(), "a file from before survived in workdir"


def test_a_workdir_holding_the_submission_is_refused(tmp_path):
    source = a_package(tmp_path / "work" / "group_7")
    with pytest.raises(ValueError, match="must not be inside each other"):
        stage(source, tmp_path / "work")
    assert (source / INIT).exists(), "the submission was deleted"


# Finding the package.


def test_package_at_the_top_of_the_submission_is_found(tmp_path):
    folder = a_package(tmp_path / "unpacked")
    assert find_package_root(folder) == folder, "dlvc/ at the top was not found"


def test_package_under_two_top_folders_is_ambiguous(tmp_path):
    a_package(tmp_path / "unpacked" / "a")
    a_package(tmp_path / "unpacked" / "b")
    with pytest.raises(SubmissionError, match="more than one dlvc/ package folder in the submission: a/, b/$"):
        find_package_root(tmp_path / "unpacked")


def test_files_beside_the_one_top_folder_are_ignored(tmp_path):
    folder = a_package(tmp_path / "unpacked" / "group_7")
    (tmp_path / "unpacked" / "results.json").write_text("{}")
    (tmp_path / "unpacked" / "notes").mkdir()
    assert find_package_root(tmp_path / "unpacked") == folder, "a stray file or folder beside group_7/ should not hide its dlvc/"


def test_missing_package_error_lists_at_most_ten_top_level_names(tmp_path):
    folder = tmp_path / "unpacked"
    (folder / "b").mkdir(parents=True)
    for index in range(11):
        (folder / f"a{index:02}.py").write_text("")
    with pytest.raises(SubmissionError) as raised:
        find_package_root(folder)
    expected = (
        "no dlvc/ package folder (a folder holding dlvc/__init__.py) in the submission; "
        "found: a00.py, a01.py, a02.py, a03.py, a04.py, a05.py, a06.py, a07.py, a08.py, a09.py, ... (2 more)"
    )
    assert str(raised.value) == expected, f"unexpected message: {raised.value}"


def test_missing_package_error_looks_inside_a_single_top_folder(tmp_path):
    folder = tmp_path / "unpacked"
    (folder / "group_7" / "src" / "dlvc").mkdir(parents=True)
    (folder / "group_7" / "report.pdf").write_text("%PDF")
    with pytest.raises(SubmissionError, match="found: group_7/report.pdf, group_7/src/$"):
        find_package_root(folder)


def test_dlvc_folder_without_init_is_not_a_package(tmp_path):
    source = tmp_path / "group_7"
    (source / "dlvc").mkdir(parents=True)
    (source / "dlvc" / "metrics.py").write_text("")
    with pytest.raises(SubmissionError, match=r"no dlvc/ package folder .* found: dlvc/metrics.py$"):
        stage(source, tmp_path / "work")


# Names of submissions.


@pytest.mark.parametrize(
    "source, expected",
    [
        ("group_7.zip", "group_7"),
        ("Group 7 (final).ZIP", "Group_7__final_"),
        ("group.7", "group.7"),
        ("Müller-Schmidt", "M_ller-Schmidt"),
        ("..", "submission"),
        (".zip", ".zip"),
        ("", "submission"),
    ],
)
def test_submission_name_is_safe_as_a_folder_name(source, expected):
    assert submission_name(Path(source)) == expected, f"submission_name({source!r})"
