"""Zip files that are the same, byte for byte, whenever they hold the same files.

``dlvc handout``, ``dlvc autograder`` and ``dlvc submit`` write their zips with
:func:`write_zip`: entries sorted by name, every timestamp 1980-01-01, every file
mode 0o644 (0o755 for executables), deflate at one level. Two builds from the same
commit therefore give the same bytes, and a zip's hash says whether anything changed.

    files = collect_files(Path("dist/handout"))          # {"README.md": Path(...), ...}
    write_zip(Path("dist/dlvc-assignment1.zip"), files, top="dlvc-assignment1")
"""

import os
import stat
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
COMPRESSION_LEVEL = 9


def output_folder(folder: Path) -> Path:
    """``folder`` when a zip can be written into it (it exists as a folder, or not at all); ValueError otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder}: a file, not a folder to write the zip into")
    return folder


def collect_files(folder: Path, leave_out: Callable[[str], bool] = lambda relative: False) -> dict[str, Path]:
    """Every regular file under ``folder``: ``{posix path relative to folder: path}``, sorted.

    ``leave_out(relative)`` is asked for every file and folder (folders end in ``/``);
    what it answers True for is skipped, a folder with everything in it. Links are
    never followed: a symbolic link raises ValueError naming it.
    """
    folder = Path(folder)
    found = {}
    for root, folders, names in os.walk(folder):
        base = Path(root).relative_to(folder)
        folders[:] = sorted(name for name in folders if not leave_out((base / name).as_posix() + "/"))
        for name in sorted(names):
            relative = (base / name).as_posix()
            if leave_out(relative):
                continue
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                raise ValueError(f"{path}: not a regular file (links and special files are not packed)")
            found[relative] = path
        for name in folders:
            if (Path(root) / name).is_symlink():
                raise ValueError(f"{Path(root) / name}: a link to a folder (links are not packed)")
    return dict(sorted(found.items()))


def write_zip(target: Path, files: Mapping[str, Path], top: str = "") -> Path:
    """Write ``files`` (``{name in the zip: the file's path}``) to ``target``, reproducibly.

    ``top`` is a folder every entry is put under (``dlvc-assignment1/README.md``);
    empty for none. The zip is written next to ``target`` first and moved into
    place, so a zip that exists is always complete. Returns ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    prefix = f"{top.strip('/')}/" if top else ""
    with zipfile.ZipFile(partial, "w") as archive:
        for name in sorted(files):
            source = Path(files[name])
            executable = bool(source.stat().st_mode & stat.S_IXUSR)
            info = zipfile.ZipInfo(prefix + name, date_time=FIXED_TIME)
            info.create_system = 3  # Unix, so that the modes below are read
            info.external_attr = (stat.S_IFREG | (EXECUTABLE_MODE if executable else FILE_MODE)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes(), compresslevel=COMPRESSION_LEVEL)
    os.replace(partial, target)
    return target
