"""The authors' released checkpoints as cells: the manifest, the cells it finds, their files.

``python -m bench run --from-checkpoints DIR`` evaluates, instead of training, every cell whose
checkpoint the manifest names and DIR holds. The manifest (TOML, ``[detector]`` tables of
``variant = "file"``) is ``--manifest FILE``, else ``DIR/released.toml``, else the shipped
``experiments/released.toml`` with the authors' models. Everything here is checked before any
job starts; the checkpoint itself is read and converted in the cell's job
(``bench.run.job``), so that one bad file fails its cell and not the sweep.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.plan.cells import DETECTORS, VARIANTS, Cell, MatrixError
from experiments import ROOT as EXPERIMENTS

DEFAULT_MANIFEST = EXPERIMENTS / "released.toml"
MANIFEST_NAME = "released.toml"


class ManifestError(MatrixError):
    """A checkpoint folder or manifest that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class Manifest:
    path: Path
    files: dict[tuple[str, str], str]  # (detector, variant) -> file name, relative to the folder


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ManifestError(f"reading {path} needs Python >= 3.11 (or the tomli package)") \
                from None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest {path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"manifest {path}: not valid TOML ({exc})") from None


def load_manifest(path: str | Path) -> Manifest:
    """Parse and check a manifest: known detectors and variants, one file name each."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    files: dict[tuple[str, str], str] = {}
    for det, table in _toml(path).items():
        if det not in DETECTORS:
            raise ManifestError(f"manifest {path}: unknown detector [{det}] "
                                f"(known: {', '.join(DETECTORS)})")
        if not isinstance(table, dict):
            raise ManifestError(f"manifest {path}: {det} must be a [{det}] table of "
                                f'variant = "file" entries')
        for var, name in table.items():
            if var not in VARIANTS:
                raise ManifestError(f"manifest {path}: unknown variant {var!r} in [{det}] "
                                    f"(known: {', '.join(VARIANTS)})")
            if not isinstance(name, str) or not name.strip():
                raise ManifestError(f"manifest {path}: [{det}] {var} must be a file name, "
                                    f"got {name!r}")
            files[(det, var)] = name
    if not files:
        raise ManifestError(f"manifest {path}: names no checkpoint")
    return Manifest(path, files)


def find_manifest(folder: str | Path, manifest: str | Path | None = None) -> Manifest:
    """--manifest FILE, else FOLDER/released.toml, else the shipped one."""
    if manifest:
        return load_manifest(manifest)
    local = Path(folder) / MANIFEST_NAME
    return load_manifest(local if local.is_file() else DEFAULT_MANIFEST)


def checkpoint_folder(folder: str | Path) -> Path:
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise ManifestError(f"--from-checkpoints {folder}: no such folder")
    return path


def checkpoint_path(cell: Cell, folder: str | Path, manifest: str | Path | None = None) -> Path:
    """The checkpoint file of a released cell (in the job: the folder was checked at submit)."""
    m = find_manifest(folder, manifest)
    name = m.files.get((cell.detector, cell.variant))
    if name is None:
        raise ManifestError(f"manifest {m.path} has no entry for {cell.detector}/{cell.variant}")
    return Path(folder).expanduser() / name


def released_cells(profile: str, detectors: list[str], variants: list[str], folder: str | Path,
                   manifest: str | Path | None = None) -> tuple[list[Cell], list[str]]:
    """The selected cells whose checkpoint is in ``folder`` (source='released', seed 0), and one
    line per selected cell without one (shown as missing in the table)."""
    root = checkpoint_folder(folder)
    m = find_manifest(root, manifest)
    found, notes = [], []
    for det in detectors:
        for var in variants:
            name = m.files.get((det, var))
            if name is None:
                notes.append(f"{det}/{var}: no entry in {m.path}")
            elif not (root / name).is_file():
                notes.append(f"{det}/{var}: {name} is not in {root}")
            else:
                found.append(Cell(profile, det, var, 0, source="released"))
    if not found:
        wanted = [m.files[(d, v)] for d in detectors for v in variants if (d, v) in m.files]
        raise ManifestError(f"no checkpoint of manifest {m.path} in {root} (looked for "
                            f"{', '.join(wanted) or 'nothing: the selection has no entry'}); "
                            "rename the files, edit the manifest or pass --manifest FILE")
    return found, notes
