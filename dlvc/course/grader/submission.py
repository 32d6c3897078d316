"""Unpack and stage a student's submission (a zip or a folder) before its code is run.

Every submission is treated as hostile. A zip or a folder may try to
- write outside the folder it is unpacked into (absolute paths, ``..``, drive letters, backslashes),
- plant links or special files (a symlink to ``/etc``, a FIFO that blocks whoever reads it),
- fill the disk (a zip bomb: a small zip that unpacks to gigabytes, headers that lie about sizes),
- confuse tools and TAs with names that are not UTF-8 or hold control characters,
- take over the grader's test run with files beside the package (``conftest.py``, ``pytest.ini``,
  ``sitecustomize.py``, ``*.pth``, a ``torch.py``, a forged ``results.json``).
So each zip entry is checked and written by hand (never ``ZipFile.extractall``), bytes are counted
while they are written, folders are copied without following links, every file is written with
mode 0o644 and every folder with 0o755, and the staged root holds a clean copy of ``dlvc/`` and
nothing else (but the wanted files the caller asks to carry along, such as a competition entry's
weights, which the sandbox must see). What is skipped or renamed becomes a note for the feedback;
what makes a submission impossible to grade raises :class:`SubmissionError` with a message a TA can paste.

    staged = stage(Path("group_7.zip"), Path("work/group_7"), wanted_files=["report.pdf"])
    staged.root     # work/group_7/package, holding only dlvc/
"""

import lzma
import os
import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from ..student.manifest import MAX_FILE_BYTES

PACKAGE = "dlvc"
UNPACKED_DIRNAME = "unpacked"
STAGED_DIRNAME = "package"
FILE_MODE = 0o644
FOLDER_MODE = 0o755
CHUNK_BYTES = 2**20
MAX_NAME_BYTES = 255  # one part of a path, as most file systems allow
MAX_PATH_BYTES = 1024  # a whole path relative to the submission
MAX_NAMES_SHOWN = 10
IGNORED_TOP_FOLDER = "__MACOSX"  # macOS's resource forks, beside the student's folder

UTF8_NAME_FLAG = 0x800
ENCRYPTED_FLAG = 0x1
READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
CORRUPT_DATA_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError)
SPECIAL_FILES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a device file",
    stat.S_IFBLK: "a device file",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}
WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
UNSAFE_NAME_CHARACTER = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Limits:
    """How much a submission may hold; going over any of them is a SubmissionError."""

    max_entries: int = 5000  # zip entries / files and folders in a folder
    max_total_bytes: int = 256 * 2**20  # bytes actually written while unpacking
    max_file_bytes: int = 64 * 2**20  # one file
    max_wanted_file_bytes: int = MAX_FILE_BYTES  # one of the wanted files (a manifest names it: weights may be large)


class SubmissionError(Exception):
    """The submission cannot be graded at all; the message says why, for the feedback."""


@dataclass
class StagedSubmission:
    """A submission unpacked and staged by :func:`stage`."""

    name: str  # the submission's name: a zip's stem or the folder's name
    source: Path  # what was given (zip or folder)
    root: Path  # the staged folder: holds ONLY dlvc/ (a clean copy) and the carried files, nothing else
    present: list[str]  # of the wanted files (relative paths, posix), those found
    missing: list[str]  # of the wanted files, those not found
    notes: list[str]  # things skipped or renamed, for the feedback


class _Skipped(Exception):
    """One entry is left out; the message says why (the submission can still be graded)."""


def submission_name(source: Path) -> str:
    """The name of a submission, safe as a folder name.

    source: a zip (its stem is used, ``group 7.zip`` -> ``group_7``) or a folder (its name).
    Returns letters, digits, ``-``, ``_`` and ``.`` only, every other character becoming ``_``;
    a name that would be empty, ``.`` or ``..`` becomes ``submission``.
    """
    source = Path(source)
    name = source.stem if source.suffix.lower() == ".zip" else source.name
    safe = UNSAFE_NAME_CHARACTER.sub("_", name)
    return safe if safe.strip(".") else "submission"


def unpack_zip(zip_path: Path, target: Path, limits: Limits = Limits(), wanted_files: Sequence[str] = ()) -> list[str]:
    """Unpack into target (must not exist or be empty); returns the notes (skipped entries and why).

    Only regular files and folders are written, each entry by hand, inside target. SubmissionError
    when the file is not a readable zip, holds more than ``limits.max_entries`` entries, or unpacks
    to more bytes than the limits allow (``max_wanted_file_bytes`` for one of ``wanted_files``, at the
    top or in one top folder). FileExistsError when target holds anything.
    """
    zip_path, target = Path(zip_path), Path(target)
    _create_empty_folder(target)
    notes: list[str] = []
    with _open_zip(zip_path) as archive:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise SubmissionError(f"the zip has {len(entries)} entries, more than the limit of {limits.max_entries}")
        writer = _Writer(target, limits, too_big=f"unpacks to more than {_size(limits.max_total_bytes)}: a zip bomb?", wanted_files=wanted_files)
        for info in entries:
            raw = _raw_zip_name(info)
            problem = _unreadable_entry_problem(info)
            if problem:
                notes.append(f"skipped {_shown(raw)}: {problem}")
                continue
            _write_entry(writer, raw, _zip_file_type(info, raw), _zip_chunks(archive, info, _shown(raw)), notes)
    return notes


def find_package_root(folder: Path) -> Path:
    """The folder holding dlvc/__init__.py: folder itself, or the one top folder that holds it.

    Files beside that top folder (a stray ``results.json``, a report zipped at the top)
    and __MACOSX or dot-files are ignored. Two top folders holding a package are
    ambiguous. SubmissionError naming what was found otherwise.
    """
    folder = Path(folder)
    if _holds_package(folder):
        return folder
    top = _visible_entries(folder)
    holding = [entry for entry in top if entry.is_dir() and not entry.is_symlink() and _holds_package(entry)]
    if len(holding) == 1:
        return holding[0]
    if len(holding) > 1:
        raise SubmissionError(f"more than one {PACKAGE}/ package folder in the submission: {', '.join(entry.name + '/' for entry in holding)}")
    raise SubmissionError(
        f"no {PACKAGE}/ package folder (a folder holding {PACKAGE}/__init__.py) in the submission; "
        f"found: {_found_names(top)}"
    )


def stage(
    source: Path, workdir: Path, wanted_files: Sequence[str] = (), limits: Limits = Limits(), carried_files: Sequence[str] = ()
) -> StagedSubmission:
    """Unpack (zip) or copy (folder) the submission into workdir/unpacked, find the package root, copy only its dlvc/ folder into workdir/package/dlvc (workdir/package is `root`), and check which of wanted_files exist relative to the package root (a wanted entry ending in "/" names a folder). workdir is created; if it exists it is emptied first.

    carried_files: wanted files (not folders) that are put into root too, at the same
    relative paths, when present (a competition entry's weights, which the sandbox must see).

    source: a zip file or a folder. Returns a :class:`StagedSubmission`. SubmissionError when the
    submission cannot be graded (not a zip, over the limits, no dlvc/ package); FileNotFoundError
    when source is neither a file nor a folder; ValueError when source and workdir are inside each other.
    """
    source, workdir = Path(source), Path(workdir)
    if not (source.is_file() or source.is_dir()):
        raise FileNotFoundError(f"no zip file or folder at {source}")
    _check_apart(source, workdir)
    _empty_folder(workdir)
    unpacked = workdir / UNPACKED_DIRNAME
    unwanted = [path for path in carried_files if path not in wanted_files or path.endswith("/")]
    if unwanted:
        raise ValueError(f"carried_files: expected wanted files, not folders; got {unwanted}")
    if source.is_dir():
        notes = _copy_folder(source, unpacked, limits, wanted_files)
    else:
        notes = unpack_zip(source, unpacked, limits, wanted_files)
    package_root = find_package_root(unpacked)
    root = workdir / STAGED_DIRNAME
    notes += _copy_package(package_root / PACKAGE, root / PACKAGE)
    present = [wanted for wanted in wanted_files if _wanted_exists(package_root, wanted)]
    missing = [wanted for wanted in wanted_files if not _wanted_exists(package_root, wanted)]
    for relative in (path for path in carried_files if path in present):
        _carry_file(package_root / relative, root, relative.split("/"))
    return StagedSubmission(submission_name(source), source, root, present, missing, notes)


class _Writer:
    """Writes folders and regular files under one target folder, counting the bytes against the limits."""

    def __init__(self, target: Path, limits: Limits, too_big: str, wanted_files: Sequence[str] = ()):
        self.target = target
        self.limits = limits
        self.too_big = too_big  # what the submission does past max_total_bytes, for the error message
        self.total_bytes = 0
        self.wanted = [wanted.split("/") for wanted in wanted_files if not wanted.endswith("/")]

    def folder(self, parts: list[str]) -> Path:
        """Create target/parts... (mode 0o755) where missing; _Skipped when one of them is a file."""
        path = self.target
        for depth, part in enumerate(parts, start=1):
            path = path / part
            _make_folder(path, "/".join(parts[:depth]))
        return path

    def file(self, parts: list[str], chunks: Iterator[bytes], shown: str) -> None:
        """Write chunks to a new file target/parts... (mode 0o644); _Skipped when the path is taken."""
        path = self.folder(parts[:-1]) / parts[-1]
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        except FileExistsError:
            raise _Skipped("the same path as an earlier entry") from None
        with open(descriptor, "wb") as out:
            os.fchmod(descriptor, FILE_MODE)
            file_bytes = 0
            file_limit = self.limits.max_wanted_file_bytes if self._is_wanted(parts) else self.limits.max_file_bytes
            for chunk in chunks:
                file_bytes += len(chunk)
                self._make_room(len(chunk), file_bytes, file_limit, shown)
                out.write(chunk)

    def _is_wanted(self, parts: list[str]) -> bool:
        """Whether ``parts`` is a wanted file where the package root may be: at the top, or in one top folder."""
        return any(parts[len(parts) - len(wanted) :] == wanted and len(parts) - len(wanted) in (0, 1) for wanted in self.wanted)

    def _make_room(self, chunk_bytes: int, file_bytes: int, file_limit: int, shown: str) -> None:
        """Count a chunk before it is written; SubmissionError when it would go over a limit."""
        if file_bytes > file_limit:
            raise SubmissionError(f"{shown} is larger than {_size(file_limit)}, the limit for one file")
        if self.total_bytes + chunk_bytes > self.limits.max_total_bytes:
            raise SubmissionError(f"the submission {self.too_big}")
        self.total_bytes += chunk_bytes


def _write_entry(writer: _Writer, raw: bytes, file_type: int, chunks: Iterator[bytes], notes: list[str]) -> bool:
    """Write one entry of a submission (a zip entry, or a file or folder of a folder); True when written.

    raw: the entry's name as bytes, relative to the submission; file_type: ``stat.S_IFMT`` of its mode;
    chunks: its bytes, read only when a regular file is written. Skips and renames are added to notes.
    """
    name, rename_reason = _clean_name(raw)
    try:
        if file_type in SPECIAL_FILES:
            raise _Skipped(f"{SPECIAL_FILES[file_type]} (only regular files and folders are unpacked)")
        if file_type not in (stat.S_IFREG, stat.S_IFDIR):
            raise _Skipped("not a regular file or folder")
        parts = _relative_parts(name)
        if file_type == stat.S_IFDIR:
            writer.folder(parts)
        else:
            writer.file(parts, chunks, _shown(raw))
    except _Skipped as skipped:
        notes.append(f"skipped {_shown(raw)}: {skipped}")
        return False
    if rename_reason:
        notes.append(f"renamed {_shown(raw)} to '{'/'.join(parts)}': {rename_reason}")
    return True


def _clean_name(raw: bytes) -> tuple[str, str | None]:
    """raw name bytes as safe text, and why it had to change (None when it did not).

    UTF-8 where the bytes are UTF-8; undecodable bytes, control characters (NUL included) and other
    invisible characters become ``_``.
    """
    try:
        text = raw.decode("utf-8")
        reason = None
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        reason = "the name is not valid UTF-8"
    clean = "".join(character if character.isprintable() and character != "\ufffd" else "_" for character in text)
    if clean != text and reason is None:
        reason = "the name holds control or invisible characters"
    return clean, reason


def _relative_parts(name: str) -> list[str]:
    """The parts of a path that stays inside the submission (backslashes separate too); _Skipped otherwise."""
    path = name.replace("\\", "/")
    if path.startswith("/"):
        raise _Skipped("an absolute path, outside the submission")
    if WINDOWS_DRIVE.match(path):
        raise _Skipped("a Windows drive path, outside the submission")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _Skipped("a path outside the submission")
    if not parts:
        raise _Skipped("an empty name")
    if max(len(part.encode()) for part in parts) > MAX_NAME_BYTES or len("/".join(parts).encode()) > MAX_PATH_BYTES:
        raise _Skipped(f"a name too long to write (over {MAX_NAME_BYTES} bytes in one part or {MAX_PATH_BYTES} in all)")
    return parts


def _shown(raw: bytes) -> str:
    """A name quoted for notes and errors: undecodable bytes and invisible characters written as escapes."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return "'" + "".join(character if character.isprintable() else ascii(character)[1:-1] for character in text) + "'"


def _size(count: int) -> str:
    """A byte count for messages: in MiB when a whole number of them."""
    return f"{count // 2**20} MiB" if count % 2**20 == 0 else f"{count} bytes"


def _make_folder(path: Path, relative: str) -> None:
    """Create one folder with mode 0o755, or keep it if it exists; _Skipped when a file has its name."""
    try:
        os.mkdir(path, FOLDER_MODE)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise _Skipped(f"'{relative}' is already a file") from None
        return
    os.chmod(path, FOLDER_MODE)


def _create_empty_folder(target: Path) -> None:
    """Create target; FileExistsError when it exists and holds anything."""
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise FileExistsError(f"{target} is not empty; unpack into a new or empty folder")


def _empty_folder(folder: Path) -> None:
    """Create folder, or remove everything in it."""
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _check_apart(source: Path, workdir: Path) -> None:
    """ValueError when one holds the other: emptying workdir would delete the submission; copying would never end."""
    source_path, work_path = source.resolve(), workdir.resolve()
    if source_path.is_relative_to(work_path) or work_path.is_relative_to(source_path):
        raise ValueError(f"the workdir {workdir} and the submission {source} must not be inside each other")


def _open_zip(zip_path: Path) -> zipfile.ZipFile:
    """The zip, opened for reading; SubmissionError when it is not a readable zip."""
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, EOFError, ValueError) as error:
        raise SubmissionError(f"'{zip_path.name}' is not a readable zip file ({error})") from None


def _raw_zip_name(info: zipfile.ZipInfo) -> bytes:
    """An entry's name as the bytes stored in the zip (zipfile decodes names without the UTF-8 flag as cp437)."""
    encoding = "utf-8" if info.flag_bits & UTF8_NAME_FLAG else "cp437"
    return info.orig_filename.encode(encoding)


def _unreadable_entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why an entry's data cannot be read (encrypted, unknown compression), or None."""
    if info.flag_bits & ENCRYPTED_FLAG:
        return "encrypted (password-protected); zip it again without a password"
    if info.compress_type not in READABLE_METHODS:
        return (
            f"compressed with method {info.compress_type}, which cannot be read; "
            "zip it again with ordinary (deflate) compression"
        )
    return None


def _zip_file_type(info: zipfile.ZipInfo, raw: bytes) -> int:
    """``stat.S_IFMT`` of an entry: the Unix type kept in external_attr.

    Without one (zips made on Windows), a folder when the name ends in a slash, else a regular file.
    """
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        return file_type
    if file_type == stat.S_IFDIR or raw.endswith((b"/", b"\\")):
        return stat.S_IFDIR
    return stat.S_IFREG


def _zip_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str) -> Iterator[bytes]:
    """An entry's bytes, decompressed in chunks; SubmissionError when its data is corrupt."""
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk
    except CORRUPT_DATA_ERRORS as error:
        raise SubmissionError(f"the zip is corrupt: cannot read {shown} ({error})") from None


def _copy_folder(source: Path, target: Path, limits: Limits, wanted_files: Sequence[str] = ()) -> list[str]:
    """Copy a submission folder into target (must not exist or be empty), with the checks of a zip; returns the notes.

    Links are never followed and special files never opened: both are skipped with a note.
    """
    _create_empty_folder(target)
    writer = _Writer(target, limits, too_big=f"folder holds more than {_size(limits.max_total_bytes)}", wanted_files=wanted_files)
    notes: list[str] = []
    entries_seen = 0
    pending = [source]
    while pending:
        folder = pending.pop()
        entries = _sorted_folder_entries(folder, at_most=limits.max_entries - entries_seen + 1)
        entries_seen += len(entries)
        if entries_seen > limits.max_entries:
            raise SubmissionError(f"the submission folder holds more than {limits.max_entries} files and folders")
        for entry in entries:
            raw = os.fsencode(os.path.relpath(entry.path, source))
            file_type = stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)
            chunks = _folder_file_chunks(Path(entry.path), _shown(raw))
            if _write_entry(writer, raw, file_type, chunks, notes) and file_type == stat.S_IFDIR:
                pending.append(Path(entry.path))
    return notes


def _sorted_folder_entries(folder: Path, at_most: int) -> list[os.DirEntry]:
    """Up to at_most entries of folder, sorted by name (a huge folder is never listed whole)."""
    with os.scandir(folder) as scan:
        entries = list(islice(scan, at_most))
    return sorted(entries, key=lambda entry: entry.name)


def _folder_file_chunks(path: Path, shown: str) -> Iterator[bytes]:
    """A file's bytes in chunks, never through a link; SubmissionError when it cannot be read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with open(descriptor, "rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk
    except OSError as error:
        raise SubmissionError(f"cannot read {shown} in the submission folder: {error.strerror}") from None


def _holds_package(folder: Path) -> bool:
    return (folder / PACKAGE / "__init__.py").is_file()


def _visible_entries(folder: Path) -> list[Path]:
    """What folder holds, sorted, without dot-files and macOS's __MACOSX folder."""
    return sorted(
        path for path in folder.iterdir() if not path.name.startswith(".") and path.name != IGNORED_TOP_FOLDER
    )


def _found_names(top: list[Path]) -> str:
    """The top-level names, folders ending in '/', for the error; inside the single top folder when there is one."""
    if len(top) == 1 and top[0].is_dir():
        inside = _visible_entries(top[0])
        names = [f"{top[0].name}/{_listed_name(path)}" for path in inside] or [f"{top[0].name}/"]
    else:
        names = [_listed_name(path) for path in top]
    if not names:
        return "nothing"
    more = len(names) - MAX_NAMES_SHOWN
    return ", ".join(names[:MAX_NAMES_SHOWN]) + (f", ... ({more} more)" if more > 0 else "")


def _listed_name(path: Path) -> str:
    return f"{path.name}/" if path.is_dir() else path.name


def _copy_package(package: Path, target: Path) -> list[str]:
    """Copy the unpacked dlvc/ folder to target without __pycache__/ folders and *.pyc files; returns the notes."""
    left_out: list[str] = []

    def compiled_python(folder: str, names: list[str]) -> list[str]:
        compiled = [name for name in names if name == "__pycache__" or name.endswith(".pyc")]
        left_out.extend(compiled)
        return compiled

    shutil.copytree(package, target, ignore=compiled_python)
    if not left_out:
        return []
    return [f"left out __pycache__/ folders and *.pyc files from {PACKAGE}/ (compiled Python; the sources are graded)"]


def _carry_file(path: Path, root: Path, parts: list[str]) -> None:
    """Move one unpacked file (regular, 0o644: the unpacking wrote it) to root/parts..., creating folders 0o755.

    Moved, not copied: the unpacked folder is staging's own, and weights may be large.
    """
    folder = root
    for part in parts[:-1]:
        folder = folder / part
        _make_folder(folder, part)
    os.replace(path, folder / parts[-1])


def _wanted_exists(package_root: Path, wanted: str) -> bool:
    """Whether a wanted file (or, ending in '/', folder) exists relative to the package root."""
    path = package_root / wanted
    return path.is_dir() if wanted.endswith("/") else path.is_file()
