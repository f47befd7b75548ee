"""The state of a split's corpus files: counts, bytes and a digest of names, sizes and mtimes.

The workflow keeps one state file per split (results/<name>/corpus/state_<split>.json) as
an input of every step that reads the corpus, and rewrites it when the corpus changes, so
that an edited caption, image or instances file, or a deleted wav, reruns what read it.
Only names, sizes and modification times are read (one stat per file), never contents.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

from ..atomic import write_json
from ..errors import InputError


def _walk(root: Path):
    """(relative path, size, mtime_ns) of every file under root, in sorted order."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError as err:
            raise InputError(folder, f"cannot list the folder ({err.strerror})") from None
        for entry in entries:
            if entry.is_dir(follow_symlinks=True):
                stack.append(Path(entry.path))
            else:
                stat = entry.stat(follow_symlinks=True)
                yield os.path.relpath(entry.path, root), stat.st_size, stat.st_mtime_ns


def path_state(path: Path) -> dict:
    """Files, bytes and digest of one file or folder; a missing path is recorded as missing."""
    if not path.exists():
        return {"missing": True}
    if path.is_file():
        stat = path.stat()
        items = [(path.name, stat.st_size, stat.st_mtime_ns)]
    else:
        items = _walk(path)
    digest, files, size = hashlib.sha256(), 0, 0
    for name, nbytes, mtime in items:
        digest.update(f"{name}\0{nbytes}\0{mtime}\n".encode())
        files, size = files + 1, size + nbytes
    return {"files": files, "bytes": size, "digest": digest.hexdigest()}


def corpus_state(paths: list[str]) -> dict:
    """State of every watched path, keyed by the path as given."""
    return {"format": 1, "paths": {str(p): path_state(Path(p)) for p in paths}}


def refresh(out: str | Path, paths: list[str]) -> bool:
    """Rewrite `out` when the corpus state differs from the recorded one; True if rewritten.
    An unchanged corpus leaves the file (and its mtime) alone, so nothing reruns; so does a
    file that holds no recorded state (one made by `snakemake --touch`)."""
    out = Path(out)
    try:
        recorded = json.loads(out.read_text())
    except (OSError, ValueError):
        return False
    state = corpus_state(paths)
    if not isinstance(recorded, dict) or "format" not in recorded or recorded == state:
        return False
    write_json(state, out)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vgsalign corpus-state",
                                     description="Record the state of a split's corpus files.")
    parser.add_argument("--paths", nargs="+", required=True, help="files and folders the split's steps read")
    parser.add_argument("--out", required=True, help="state JSON to write")
    args = parser.parse_args(argv)
    state = corpus_state(args.paths)
    write_json(state, Path(args.out))
    for path, entry in state["paths"].items():
        print(f"{path}: " + ("missing" if entry.get("missing") else f"{entry['files']} files, {entry['bytes']} bytes"))
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("corpus-state", main))
