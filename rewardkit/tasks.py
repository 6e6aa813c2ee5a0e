"""The task contract: what a task adapter turns a data set into, and where the data comes from.

A task adapter (a subclass of :class:`Task`, registered through the ``register_tasks`` hook)
loads a split of a data source into :class:`Example` objects (:meth:`Task.load`, returning a
:class:`LoadResult`) and turns each example into a :class:`rewardkit.policy.Prompt` for a policy
backend (:meth:`Task.prompt`): the instruction text plus the audio, decoded, mixed to mono and
resampled to the model's rate. The training loop scores completions against
``Example.references``; ``Example.source`` (the transcript or source-language text) is passed on
to rewards that need it, such as COMET.

Built-in tasks: ``speech_translation``, ``spoken_qa`` and ``asr``
(``rewardkit.plugins.speech_tasks``), and ``text`` (``rewardkit.plugins.text_task``: a prompt
and references, no audio, for any causal LM).

Instruction text and the audio placeholder
    ``Prompt.text`` contains the literal token ``<audio>`` (:data:`AUDIO_PLACEHOLDER`) exactly
    once, where the audio belongs ("Listen to the audio <audio> and answer the following
    question: ..."). The backend replaces it with the model's own audio tokens and applies the
    model's chat template where it has one. Field values never add a second ``<audio>``. The
    template is picked per example from the task's templates by a stable hash of the example id
    (the same id gets the same template on every run and machine).

Data sources (``load(source, split)``), tried in this order
    1. A JSONL manifest: ``source`` is a ``.jsonl`` file (``split`` is then ignored) or a
       directory holding ``{split}.jsonl``. A ``.tsv`` file or ``{split}.tsv`` (a header row,
       tab-separated, no quoting; a column name repeated, e.g. ``reference`` twice, gives a list
       of values) works the same way. A ``.json`` file or ``{split}.json`` holding one JSON
       array of objects (LibriSQA's format) works the same way, as does a single
       ``*-{split}.json[l]`` / ``*_{split}.json[l]`` file in the directory
       (``LibriSQA-PartI-train.json``).
    2. A directory written by ``datasets``' ``save_to_disk`` (a ``DatasetDict``, whose
       ``split`` is taken, or a single ``Dataset``, or ``{split}/`` inside the directory), read
       with ``datasets.load_from_disk``; or parquet files: a ``.parquet`` file, or in the
       directory ``{split}.parquet``, ``{split}-*.parquet``, ``{split}_*.parquet``,
       ``{split}/*.parquet``, or the same under ``data/`` (the hub's layout). Parquet needs
       ``pyarrow``; ``save_to_disk`` directories and hub names need ``datasets``
       (``pip install 'rewardkit[datasets]'``).
    3. Anything else that is not an existing path is a ``datasets`` hub name:
       ``datasets.load_dataset(source, subset, split=split)``, the same code path as (2). Offline,
       this fails with a one-line error that says to pass a local copy instead.

Manifest format (written by ``rewardkit data make``)
    UTF-8, one JSON object per line, blank lines ignored, keys::

        id           unique within the split (string; optional: default "{split}-{row}")
        audio        path to a wav/flac/ogg (or mp3/opus) file, relative to the manifest's
                     directory (or to the task's audio_dir= when given) and inside it: ``..``
                     and absolute paths are refused unless $REWARDKIT_ALLOW_AUDIO_OUTSIDE=1
        speech translation:
          transcript   source-language text (kept as Example.source, for COMET)
          translation  target-language text, or a list of texts (several references)
          src_lang     optional source language code (default: the task's src_lang= option)
          tgt_lang     optional target language code (default: the task's tgt_lang= option)
        spoken QA:
          question     the question (text, shown in the instruction)
          answer       the reference answer, or a list of answers
          transcript   optional: the transcript of the spoken passage (Example.source)

    Example lines::

        {"id": "st-0001", "audio": "audio/st-0001.wav", "transcript": "The cat sleeps.",
         "translation": "Die Katze schläft.", "src_lang": "en", "tgt_lang": "de"}
        {"id": "qa-0001", "audio": "audio/qa-0001.wav", "transcript": "Anna bought three
         apples.", "question": "How many apples did Anna buy?", "answer": "Three apples."}

    Other keys are ignored. Audio may have any channel count (averaged to mono) and any rate
    (resampled); texts are stripped of surrounding whitespace.

Column mappings
    Each task tries, per field, a list of column names and takes the first present (see
    ``Task.default_columns``); ``columns=field:column[,field:column...]`` (``;`` also
    separates pairs, which is safe inside a comma-separated spec) overrides them. Known data
    sets:

    ============  ===========================================  =================================
    field         CoVoST2 (``facebook/covost2``, e.g. en_de)    LibriSQA (``ZihanZhao/LibriSQA``)
    ============  ===========================================  =================================
    id            ``id``                                       none (``{split}-{row}``)
    audio         ``audio`` (Audio feature), else ``path`` /    ``speech_path`` (relative to the
                  ``file`` (Common Voice clip, relative to      LibriSpeech root: pass it as
                  ``audio_dir=``)                               ``audio_dir=``)
    transcript    ``sentence``                                 ``text``
    translation   ``translation``                              --
    question      --                                           ``question``
    answer        --                                           ``answer``
    ============  ===========================================  =================================

    Assumptions. CoVoST2's hub version is a loading script that needs the Common Voice clips
    (``data_dir``) and recent ``datasets`` no longer runs scripts: prepare it once elsewhere and
    pass the directory saved with ``save_to_disk`` or its parquet export; its language pair is
    the ``subset`` (``en_de``), the task's ``src_lang``/``tgt_lang`` set the prompt's languages.
    LibriSQA ships JSON arrays without audio (``LibriSQA-PartI/LibriSQA-PartI-{train,test}.json``,
    Part II likewise) with keys ``speech_path``, ``question``, ``answer`` and ``text``; its
    audio is LibriSpeech (train-clean-360, test-clean), which ships ``.flac`` where the JSON may
    name ``.wav``: a missing audio file is looked up with the other supported extensions. Part II
    (multiple choice) is assumed to carry its options inside ``question`` and the answer with
    its analysis in ``answer``; map other names with ``columns=``.

Bad input
    A problem in a row (missing or corrupt audio, an unsupported format, an empty reference, a
    missing field, audio longer than ``max_duration``, a duplicate id, a malformed line) raises
    :class:`DataError` (or :class:`rewardkit.audio.AudioError`), one line naming the file and
    row and the fix. With ``skip_bad_rows=True`` (``--skip-bad-rows``) such rows are skipped and
    counted by reason in ``LoadResult.skipped`` instead. Problems with the source itself (not
    found, no such split, a required column absent from a table, a missing extra) always raise.
    Audio headers are checked while loading; samples are decoded by :meth:`Task.prompt`.
"""

from __future__ import annotations

import hashlib
import json
import string
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from rewardkit.errors import RewardkitError
from rewardkit.options import Configurable

if TYPE_CHECKING:  # numpy and rewardkit.policy (numpy) stay out of plugin import time
    import numpy as np

    from rewardkit.policy import Prompt

#: Marks where the audio goes in ``Prompt.text``; the backend replaces it.
AUDIO_PLACEHOLDER = "<audio>"
#: The optional dependency group for ``datasets`` / ``pyarrow`` sources.
DATASETS_EXTRA = "datasets"
SKIP_HINT = "or skip such rows with --skip-bad-rows"

SourceKind = Literal["jsonl", "json", "tsv", "parquet", "arrow", "hub"]


class TaskError(RewardkitError):
    """A task option or data source is wrong."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(" ".join(str(message).split()))  # always one line
        self.reason = reason


class DataError(TaskError):
    """A row (``reason`` set: what ``skip_bad_rows`` counts) or a whole source is unusable."""


# --- Examples -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddedAudio:
    """Audio stored inside a table (parquet, Arrow) rather than in a file of its own; read
    lazily by :meth:`read`, so loading a split never holds its audio in memory."""

    kind: SourceKind  # "parquet", "arrow" or "hub"
    location: str  # the parquet file, the save_to_disk directory, or json [name, subset, split]
    row: int  # within that file or data set
    column: str
    name: str = ""  # the original file name, when the table recorded one

    def read(self) -> bytes | tuple[Any, int]:
        """The encoded file's bytes, or decoded ``(samples, sampling_rate)``."""
        payload = _audio_payload(_table_cell(self.kind, self.location, self.row, self.column))
        if payload is None:
            raise DataError(f"{self}: the audio cell is empty", "missing_audio")
        return payload

    def __str__(self) -> str:
        where = self.location
        if self.kind == "hub":
            name, _, split = json.loads(self.location)
            where = f"{name} split {split}"
        return f"{where} row {self.row}" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True)
class Example:
    """One item of a split.

    ``audio``: a file path, audio embedded in a table (:class:`EmbeddedAudio`), or None for a
    text-only task. ``references``: one or more reference texts (non-empty). ``source``: the
    transcript or source-language text, if known. ``fields``: other texts the instruction uses
    (``question``; ``src_lang``, ``tgt_lang``). ``duration``: seconds, from the audio header.
    """

    id: str
    audio: Path | EmbeddedAudio | None
    references: tuple[str, ...]
    source: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    duration: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "references", tuple(self.references))
        object.__setattr__(self, "fields", dict(self.fields))


@dataclass
class LoadResult:
    """The examples of a split, and the rows skipped (``skip_bad_rows``), counted by reason
    (``missing_audio``, ``corrupt_audio``, ``unsupported_format``, ``too_long``,
    ``empty_reference``, ``missing_field``, ``empty_field``, ``duplicate_id``, ``bad_row``).
    ``first_errors`` keeps the first message of each reason."""

    examples: list[Example]
    skipped: dict[str, int] = field(default_factory=dict)
    first_errors: dict[str, str] = field(default_factory=dict)
    source: str = ""  # what was read, e.g. "data/st/train.jsonl (JSONL manifest)"

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line: how many examples, and how many rows were skipped and why."""
        text = f"{len(self.examples)} examples from {self.source}"
        if self.skipped:
            why = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
            text += f"; skipped {self.num_skipped} bad rows ({why})"
        return text


# --- Data sources ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSource:
    """A resolved data source: its kind, files, and the directory relative audio paths use."""

    kind: SourceKind
    location: str  # a file, a directory (arrow) or a hub name
    split: str
    files: tuple[Path, ...] = ()
    base_dir: Path | None = None
    subset: str | None = None

    def describe(self) -> str:
        what = {
            "jsonl": "JSONL manifest",
            "json": "JSON manifest",
            "tsv": "TSV file",
            "parquet": "parquet",
            "arrow": "datasets save_to_disk directory",
            "hub": "datasets hub",
        }[self.kind]
        where = self.location
        if self.files:
            more = len(self.files) - 1
            where = str(self.files[0]) + (
                f" and {more} more file{'s' * (more > 1)}" if more else ""
            )
        if self.kind == "hub":
            where = f"{self.location}" + (f" ({self.subset})" if self.subset else "")
            where += f" split {self.split}"
        return f"{where} ({what})"


@dataclass
class Row:
    """One raw row: where it is (for messages), its position, its values or why it is bad."""

    where: str
    index: int  # position among the source's rows (0-based), for default ids
    values: dict[str, Any] | None
    error: DataError | None = None
    cell: tuple[SourceKind, str, int] | None = None  # (kind, location, row) for EmbeddedAudio


def _looks_like_path(source: str) -> bool:
    """A local path (never sent to the hub): see :func:`rewardkit.checks.looks_local`."""
    from rewardkit.checks import looks_local

    return looks_local(source) or Path(source).suffix.lower() in (
        ".jsonl",
        ".json",
        ".tsv",
        ".parquet",
    )


def resolve_source(source: str, split: str, *, subset: str | None = None) -> DataSource:
    """Find what ``source`` is (see the module docstring for the order) without reading rows."""
    path = Path(source).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        kinds: dict[str, SourceKind] = {".jsonl": "jsonl", ".json": "json", ".tsv": "tsv",
                                        ".parquet": "parquet"}  # fmt: skip
        if suffix not in kinds:
            raise DataError(
                f"data source {source}: unsupported file type {suffix or '(none)'}; pass a .jsonl "
                "manifest, a .json array, a .tsv file, parquet files, or a directory holding "
                "{split}.jsonl"
            )
        return DataSource(kinds[suffix], str(path), split, (path,), path.parent, subset)
    if path.is_dir():
        return _resolve_directory(path, split, subset)
    if _looks_like_path(source):
        raise DataError(f"data source {source} does not exist; check the path")
    return DataSource("hub", source, split, subset=subset)


#: Other names of the validation split (``rewardkit data make`` writes ``dev.jsonl``).
SPLIT_ALIASES = {"validation": ("dev", "valid"), "dev": ("validation", "valid"),
                 "valid": ("validation", "dev")}  # fmt: skip


def _resolve_directory(path: Path, split: str, subset: str | None) -> DataSource:
    for name_of_split in (split, *SPLIT_ALIASES.get(split, ())):
        for name, kind in ((f"{name_of_split}.jsonl", "jsonl"), (f"{name_of_split}.json", "json"),
                           (f"{name_of_split}.tsv", "tsv")):  # fmt: skip
            if (path / name).is_file():
                file = path / name
                return DataSource(kind, str(file), split, (file,), path, subset)  # type: ignore[arg-type]
    if (path / split / "state.json").is_file():  # a DatasetDict's split, or a lone Dataset
        return DataSource("arrow", str(path / split), split, (), path / split, subset)
    if (path / "dataset_dict.json").is_file():
        try:
            splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        except (OSError, ValueError, KeyError, TypeError):
            splits = sorted(p.parent.name for p in path.glob("*/state.json"))
        raise DataError(
            f"datasets directory {path} has no split '{split}'; its splits: {', '.join(splits)}"
        )
    if (path / "state.json").is_file():  # a single Dataset: the split name is not checked
        return DataSource("arrow", str(path), split, (), path, subset)
    for prefix in ("", "data/"):
        patterns = (
            f"{split}.parquet",
            f"{split}-*.parquet",
            f"{split}_*.parquet",
            f"{split}/*.parquet",
        )
        for pattern in patterns:
            files = tuple(sorted(path.glob(prefix + pattern)))
            if files:
                return DataSource("parquet", str(path), split, files, path, subset)
    named = sorted(
        p for ext in ("jsonl", "json") for sep in "-_." for p in path.glob(f"*{sep}{split}.{ext}")
    )
    if len(named) == 1:
        kind: SourceKind = "jsonl" if named[0].suffix == ".jsonl" else "json"
        return DataSource(kind, str(named[0]), split, (named[0],), path, subset)
    found = sorted(
        {p.stem for p in path.glob("*.json*") if p.suffix in (".json", ".jsonl")}
        | {p.parent.name for p in path.glob("*/*.parquet") if p.parent.name != "data"}
        | {p.name.split("-")[0].split("_")[0].split(".")[0] for p in path.glob("*.parquet")}
        | {p.name.split("-")[0].split("_")[0].split(".")[0] for p in path.glob("data/*.parquet")}
    )
    hint = f"; it has: {', '.join(found)}" if found else ""
    raise DataError(
        f"no '{split}' split in {path}: expected {split}.jsonl, {split}.json, a datasets "
        f"save_to_disk directory or {split}-*.parquet files{hint}"
    )


def _brief(exc: Exception, limit: int = 300) -> str:
    """An exception as short one-line text, for messages that wrap it."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _need(module: str, what: str) -> Any:
    """Import an optional dependency or say which extra installs it."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise DataError(
            f"{what} needs the '{module.split('.')[0]}' package: "
            f"pip install 'rewardkit[{DATASETS_EXTRA}]'"
        ) from None


#: Open data sets (arrow directories, hub data sets), for EmbeddedAudio reads; keyed by kind,
#: location and the directory's modification stamp (a rewritten directory is opened afresh).
_OPEN: dict[tuple[str, str, int], Any] = {}


def _stamp(path: str) -> int:
    """Modification time of a file, or of a save_to_disk directory's state.json (0: none)."""
    target = Path(path, "state.json") if Path(path).is_dir() else Path(path)
    try:
        return target.stat().st_mtime_ns
    except OSError:
        return 0


def _open_dataset(kind: SourceKind, location: str) -> Any:
    """A ``datasets.Dataset`` in arrow format (no decoding: Audio cells stay {bytes, path}).

    ``location``: a directory holding one Dataset (``arrow``), or json ``[name, subset, split]``
    (``hub``). Opened once per process."""
    key = (kind, location, _stamp(location) if kind == "arrow" else 0)
    if key in _OPEN:
        return _OPEN[key]
    if kind == "arrow":
        datasets = _need("datasets", "reading a datasets save_to_disk directory")
        try:
            ds = datasets.load_from_disk(location)
        except Exception as exc:
            raise DataError(f"cannot read datasets directory {location}: {_brief(exc)}") from exc
        if not isinstance(ds, datasets.Dataset):
            raise DataError(f"{location} holds a {type(ds).__name__}, expected one Dataset")
    else:
        name, subset, hub_split = json.loads(location)
        datasets = _need(
            "datasets",
            f"data source {name!r} is not a local file or directory; loading it from the "
            "Hugging Face hub",
        )
        try:
            ds = datasets.load_dataset(name, subset, split=hub_split)
        except Exception as exc:
            raise DataError(
                f"data source {name!r} is not a local file or directory, and loading it from "
                f"the Hugging Face hub failed ({type(exc).__name__}: {_brief(exc)}); if this "
                "machine is offline, fetch the data set elsewhere and pass the directory written "
                "by save_to_disk or its parquet files"
            ) from exc
    ds = ds.with_format("arrow")
    _OPEN[key] = ds
    return ds


def _parquet_file(location: str) -> Any:
    return _parquet_file_at(location, _stamp(location))


@lru_cache(maxsize=64)
def _parquet_file_at(location: str, stamp: int) -> Any:
    pq = _need("pyarrow.parquet", "reading parquet files")
    try:
        return pq.ParquetFile(location)
    except Exception as exc:
        raise DataError(f"cannot read parquet file {location}: {_brief(exc)}") from exc


def _row_group(location: str, group: int, column: str) -> Any:
    return _row_group_at(location, _stamp(location), group, column)


@lru_cache(maxsize=4)
def _row_group_at(location: str, stamp: int, group: int, column: str) -> Any:
    return _parquet_file_at(location, stamp).read_row_group(group, columns=[column]).column(0)


def _table_cell(kind: SourceKind, location: str, row: int, column: str) -> Any:
    """One cell of a table, read on demand."""
    if kind == "parquet":
        meta = _parquet_file(location).metadata
        for group in range(meta.num_row_groups):
            rows = meta.row_group(group).num_rows
            if row < rows:
                return _row_group(location, group, column)[row].as_py()
            row -= rows
        raise IndexError(f"row out of range in {location}")
    return _open_dataset(kind, location)[row][column][0].as_py()


def _source_dataset(src: DataSource) -> tuple[SourceKind, str, Any]:
    if src.kind == "hub":
        location = json.dumps([src.location, src.subset, src.split])
        return "hub", location, _open_dataset("hub", location)
    return "arrow", src.location, _open_dataset("arrow", src.location)


def source_columns(src: DataSource) -> list[str] | None:
    """The column names of a table source; None for JSON sources (keys vary by row)."""
    if src.kind in ("jsonl", "json", "tsv"):
        return None
    if src.kind == "parquet":
        names: list[str] = []
        for file in src.files:
            for name in _parquet_file(str(file)).schema_arrow.names:
                if name not in names:
                    names.append(name)
        return names
    return list(_source_dataset(src)[2].column_names)


def iter_rows(src: DataSource, columns: Sequence[str] | None = None) -> Iterator[Row]:
    """The source's rows in order; ``columns`` limits which columns tables read."""
    if src.kind == "jsonl":
        yield from _jsonl_rows(src.files[0])
    elif src.kind == "json":
        yield from _json_rows(src.files[0])
    elif src.kind == "tsv":
        yield from _tsv_rows(src.files[0])
    elif src.kind == "parquet":
        index = 0
        for file in src.files:
            pf = _parquet_file(str(file))
            wanted = [c for c in columns or pf.schema_arrow.names if c in pf.schema_arrow.names]
            local = 0
            for batch in pf.iter_batches(batch_size=64, columns=wanted):
                for values in batch.to_pylist():
                    cell = ("parquet", str(file), local)
                    yield Row(f"{file} row {local}", index, values, cell=cell)  # type: ignore[arg-type]
                    local += 1
                    index += 1
    else:
        kind, location, ds = _source_dataset(src)
        if columns:
            ds = ds.select_columns([c for c in columns if c in ds.column_names])
        where = src.location if kind == "arrow" else f"{src.location} split {src.split}"
        index = 0
        for batch in ds.iter(batch_size=64):
            for values in batch.to_pylist():
                yield Row(f"{where} row {index}", index, values, cell=(kind, location, index))
                index += 1


def _jsonl_rows(path: Path) -> Iterator[Row]:
    index = 0
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                yield _json_row(line, f"{path} line {lineno}", index)
                index += 1
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text ({exc.reason}); write it as UTF-8 JSONL"
        ) from exc


def _json_row(line: str, where: str, index: int) -> Row:
    try:
        values = json.loads(line)
    except json.JSONDecodeError as exc:
        error = DataError(
            f"{where}: not valid JSON ({exc.msg}, column {exc.colno}); fix or remove the line",
            "bad_row",
        )
        return Row(where, index, None, error)
    if not isinstance(values, dict):
        error = DataError(
            f"{where}: expected a JSON object, got {type(values).__name__}", "bad_row"
        )
        return Row(where, index, None, error)
    return Row(where, index, values)


def _tsv_rows(path: Path) -> Iterator[Row]:
    """Rows of a TSV file: a header row, then one row per line (blank lines ignored); no
    quoting. A column name given more than once collects its cells into a list (several
    references); empty cells are absent values."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason}); write it as UTF-8") from exc
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise DataError(f"{path}: empty TSV file; the first line must name the columns")
    header = [name.strip() for name in numbered[0][1].split("\t")]
    for index, (lineno, line) in enumerate(numbered[1:]):
        where = f"{path} line {lineno}"
        cells = line.split("\t")
        if len(cells) != len(header):
            error = DataError(
                f"{where}: {len(cells)} tab-separated cells, the header has {len(header)}",
                "bad_row",
            )
            yield Row(where, index, None, error)
            continue
        values: dict[str, Any] = {}
        for name, cell in zip(header, cells):
            value = cell.strip() or None
            if name not in values:
                values[name] = value
            else:  # a repeated column: a list of its non-empty cells
                before = values[name] if isinstance(values[name], list) else [values[name]]
                values[name] = [v for v in (*before, value) if v is not None]
        yield Row(where, index, values)


def _json_rows(path: Path) -> Iterator[Row]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason}); write it as UTF-8") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # maybe JSON Lines with a .json name
        yield from _jsonl_rows(path)
        return
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of objects (or JSON Lines)")
    for index, values in enumerate(data):
        where = f"{path} item {index}"
        if isinstance(values, dict):
            yield Row(where, index, values)
        else:
            kind = type(values).__name__
            yield Row(
                where, index, None, DataError(f"{where}: expected an object, got {kind}", "bad_row")
            )


def parse_columns(spec: str | Mapping[str, str] | None, known: Sequence[str]) -> dict[str, str]:
    """``"question:query,answer:response"`` (``;`` also separates pairs) -> {field: column}."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, Mapping):
        pairs = list(spec.items())
    else:
        pairs = []
        for item in spec.replace(";", ",").split(","):
            key, sep, value = item.replace("=", ":", 1).partition(":")
            if not sep or not key.strip() or not value.strip():
                raise TaskError(
                    f"malformed columns={spec!r}: {item!r} is not FIELD:COLUMN "
                    "(e.g. columns=question:query,answer:response)"
                )
            pairs.append((key.strip(), value.strip()))
    unknown = [k for k, _ in pairs if k not in known]
    if unknown:
        raise TaskError(
            f"columns={spec!r} names unknown field {unknown[0]!r}; fields: {', '.join(known)}"
        )
    return dict(pairs)


def template_index(example_id: str, count: int) -> int:
    """A stable choice in range(count) from the example id (the same on every run)."""
    digest = hashlib.blake2b(example_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


# --- Value helpers --------------------------------------------------------------------------


def _audio_payload(value: Any) -> bytes | tuple[Any, int] | None:
    """Bytes or decoded samples from a table's audio cell, if it holds them."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("array") is not None and value.get("sampling_rate"):
            import numpy as np

            return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
    return None


def _text(value: Any, name: str, where: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise DataError(f"{where}: field '{name}' must be text, got {type(value).__name__}", "bad_row")


def _texts(value: Any, name: str, where: str) -> list[str]:
    """A text or a list of texts (or {"text": [...]}, SQuAD style), stripped, empties dropped."""
    if isinstance(value, Mapping) and "text" in value:
        value = value["text"]
    items = value if isinstance(value, (list, tuple)) else [value]
    return [t for t in (_text(v, name, where) for v in items if v is not None) if t]


# --- Tasks ----------------------------------------------------------------------------------


class Task(Configurable, ABC):
    """Base class of task adapters: load a split into examples, make prompts from them.

    Subclasses set the class attributes and implement :meth:`template_values`. Options are the
    keyword parameters of ``__init__`` (annotated ``bool``, ``int``, ``float``, ``str``, a
    ``Literal`` of strings, or ``X | None``), as for rewards; subclasses list their own and
    pass the common ones on to ``super().__init__``.
    """

    name: ClassVar[str]
    kind: ClassVar[str] = "task"
    error = TaskError
    #: field -> column names tried in order (the first present, non-null one wins).
    default_columns: ClassVar[Mapping[str, tuple[str, ...]]]
    #: The field holding the reference text(s).
    reference_field: ClassVar[str]
    #: The field kept as ``Example.source`` (transcript / source text), if any.
    source_field: ClassVar[str | None] = None
    #: Text fields every row needs (kept in ``Example.fields``).
    required_fields: ClassVar[tuple[str, ...]] = ()
    #: Text fields kept in ``Example.fields`` when present (defaults: :meth:`field_defaults`).
    optional_fields: ClassVar[tuple[str, ...]] = ()
    #: Whether every row needs audio.
    audio_required: ClassVar[bool] = True
    #: A text-only task: no audio, and templates hold no ``<audio>`` marker.
    text_only: ClassVar[bool] = False
    #: Instruction templates with ``<audio>`` and ``{field}`` placeholders; the first is the
    #: one ``templates=fixed`` uses.
    builtin_templates: ClassVar[tuple[str, ...]]
    #: The ``{names}`` a template may use (the keys of :meth:`template_values`).
    template_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        max_duration: float | None = 30.0,
        columns: str | None = None,
        audio_dir: str | None = None,
        subset: str | None = None,
        templates: Literal["varied", "fixed"] = "varied",
        template: str | None = None,
    ):
        """``max_duration``: longest audio in seconds (None: no limit; 30 s fits Whisper-style
        encoders). ``columns``: ``field:column`` overrides. ``audio_dir``: base directory of
        relative audio paths (default: the manifest's or data set's directory). ``subset``: the
        hub configuration (e.g. ``en_de``). ``templates``: ``varied`` (all built-in templates,
        one per example by id) or ``fixed`` (the first). ``template``: a custom template
        instead, with ``<audio>`` and ``{field}`` placeholders."""
        if max_duration is not None and max_duration <= 0:
            raise TaskError(f"task '{self.name}': max_duration must be positive or none")
        if templates not in ("varied", "fixed"):
            raise TaskError(f"task '{self.name}': templates must be varied or fixed")
        self.max_duration = max_duration
        self.columns = parse_columns(columns, list(self.default_columns))
        self.audio_dir = Path(audio_dir).expanduser() if audio_dir else None
        self.subset = subset
        if template is not None:
            self._check_template(template)
            self.templates: tuple[str, ...] = (template,)
        else:
            builtin = self.builtin_templates
            self.templates = builtin[:1] if templates == "fixed" else tuple(builtin)

    def _check_template(self, template: str) -> None:
        if self.text_only and AUDIO_PLACEHOLDER in template:
            raise TaskError(
                f"task '{self.name}' has no audio: template {template!r} must not contain "
                f"{AUDIO_PLACEHOLDER}"
            )
        if not self.text_only and template.count(AUDIO_PLACEHOLDER) != 1:
            raise TaskError(
                f"task '{self.name}': template {template!r} must contain {AUDIO_PLACEHOLDER} "
                "exactly once (where the audio goes)"
            )
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as exc:
            raise TaskError(f"task '{self.name}': malformed template {template!r}: {exc}") from None
        unknown = sorted(names - set(self.template_fields))
        if unknown:
            allowed = ", ".join("{" + f + "}" for f in self.template_fields) or "none"
            raise TaskError(
                f"task '{self.name}': template field {{{unknown[0]}}} is unknown; "
                f"available: {allowed}"
            )

    # --- loading ---

    def load(self, source: str, split: str, *, skip_bad_rows: bool = False) -> LoadResult:
        """Load ``split`` of ``source`` (a manifest, a datasets directory, parquet files or a
        hub name; see the module docstring). Bad rows raise :class:`DataError` unless
        ``skip_bad_rows``, which skips and counts them instead."""
        from rewardkit.audio import AudioError

        src = resolve_source(source, split, subset=self.subset)
        table_columns = source_columns(src)
        mapping = self._table_mapping(src, table_columns) if table_columns is not None else None
        result = LoadResult([], source=src.describe())
        seen: dict[str, str] = {}
        for row in iter_rows(src, list(mapping.values()) if mapping is not None else None):
            try:
                if row.error is not None:
                    raise row.error
                assert row.values is not None
                values = self._field_values(row.values, mapping, row.where)
                example = self.example_from_row(values, row, src, mapping)
                if example.id in seen:
                    raise DataError(
                        f"{row.where}: id {example.id!r} repeats the id of {seen[example.id]}; "
                        "make ids unique within the split",
                        "duplicate_id",
                    )
                seen[example.id] = row.where
                result.examples.append(example)
            except (DataError, AudioError) as exc:
                reason = exc.reason or "bad_row"
                if not skip_bad_rows:
                    raise type(exc)(f"{exc}; {SKIP_HINT}", reason) from None
                result.skipped[reason] = result.skipped.get(reason, 0) + 1
                result.first_errors.setdefault(reason, str(exc))
        if not result.examples:
            why = f"all {result.num_skipped} rows were bad ({result.summary()})"
            raise DataError(
                f"{src.describe()}: no usable examples; "
                + (why if result.skipped else "the split has no rows")
            )
        return result

    def _candidates(self, field_name: str) -> tuple[str, ...]:
        if field_name in self.columns:
            return (self.columns[field_name],)
        return tuple(self.default_columns.get(field_name, ()))

    def _required(self) -> list[str]:
        required = [self.reference_field, *self.required_fields]
        return ["audio", *required] if self.audio_required else required

    def _table_mapping(self, src: DataSource, columns: list[str]) -> dict[str, str]:
        """field -> column for a table, checked once: a required field without a column is an
        error about the source, not about each row."""
        mapping: dict[str, str] = {}
        for name in self.default_columns:
            found = [c for c in self._candidates(name) if c in columns]
            if found:
                mapping[name] = found[0]
            elif name in self.columns:
                raise DataError(
                    f"{src.describe()} has no column {self.columns[name]!r} (given for "
                    f"'{name}' in columns=); its columns: {', '.join(columns)}"
                )
            elif name in self._required():
                tried = ", ".join(self._candidates(name))
                raise DataError(
                    f"{src.describe()} has no column for '{name}' (tried: {tried}); its columns: "
                    f"{', '.join(columns)}; map one with columns={name}:COLUMN"
                )
        return mapping

    def _field_values(
        self, row: Mapping[str, Any], mapping: dict[str, str] | None, where: str
    ) -> dict[str, Any]:
        """Canonical field -> raw value (None when absent)."""
        values: dict[str, Any] = {}
        for name in self.default_columns:
            if mapping is not None:
                values[name] = row.get(mapping[name]) if name in mapping else None
            else:
                values[name] = next(
                    (row[c] for c in self._candidates(name) if row.get(c) is not None), None
                )
        for name in self._required():
            if values.get(name) is None:
                tried = ", ".join(self._candidates(name))
                raise DataError(
                    f"{where}: no '{name}' field (tried: {tried}); add it, or map another "
                    f"field with columns={name}:NAME",
                    "missing_field",
                )
        return values

    def field_defaults(self) -> dict[str, str]:
        """Values of optional fields that a row does not give (e.g. the task's languages)."""
        return {}

    def example_from_row(
        self,
        values: dict[str, Any],
        row: Row,
        src: DataSource,
        mapping: dict[str, str] | None = None,
    ) -> Example:
        """Build an example from a row's canonical field values (see ``default_columns``);
        ``mapping``: field -> column of a table source. Raises :class:`DataError` or
        ``AudioError``, with a reason, for a bad row."""
        where = row.where
        raw_id = values.get("id")
        example_id = _text(raw_id, "id", where) if raw_id is not None else ""
        example_id = example_id or f"{src.split}-{row.index}"
        where = f"{where} (id {example_id!r})" if raw_id is not None else where
        references = tuple(_texts(values[self.reference_field], self.reference_field, where))
        if not references:
            raise DataError(
                f"{where}: the reference ('{self.reference_field}') is empty; fill it in or "
                "remove the row",
                "empty_reference",
            )
        fields = dict(self.field_defaults())
        for name in self.required_fields:
            text = _text(values[name], name, where)
            if not text:
                raise DataError(f"{where}: '{name}' is empty; fill it in", "empty_field")
            fields[name] = text
        for name in self.optional_fields:
            if values.get(name) is not None and _text(values[name], name, where):
                fields[name] = _text(values[name], name, where)
        source = None
        if self.source_field and values.get(self.source_field) is not None:
            source = _text(values[self.source_field], self.source_field, where) or None
        audio_column = (mapping or {}).get("audio", "audio")
        audio, duration = self._resolve_audio(values.get("audio"), row, src, where, audio_column)
        return Example(example_id, audio, references, source, fields, duration)

    def _resolve_audio(
        self, value: Any, row: Row, src: DataSource, where: str, column: str
    ) -> tuple[Path | EmbeddedAudio | None, float | None]:
        """The audio reference and its duration (header only); checks max_duration."""
        from rewardkit import audio as audio_lib

        if value is None:
            return None, None
        payload = _audio_payload(value)
        if payload is not None:
            if row.cell is None:
                raise DataError(f"{where}: audio must be a file path", "bad_row")
            kind, location, index = row.cell
            name = (value.get("path") or "") if isinstance(value, Mapping) else ""
            audio: Path | EmbeddedAudio = EmbeddedAudio(kind, location, index, column, name)
            info = audio_lib.audio_info(payload, where=f"{where} ({audio})")
        else:
            if isinstance(value, Mapping):
                value = value.get("path")
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}: no audio path; give the audio file", "missing_field")
            audio = self._audio_path(value.strip(), src, where)
            info = audio_lib.audio_info(audio, where=where)
        audio_lib.check_duration(info.duration, self.max_duration, audio, where)
        return audio, info.duration

    def _audio_path(self, value: str, src: DataSource, where: str = "") -> Path:
        """The audio file. A manifest's (JSONL, JSON, TSV) must lie inside the manifest's
        directory (or audio_dir=): ``..`` and absolute paths are refused unless
        $REWARDKIT_ALLOW_AUDIO_OUTSIDE=1 (a shared manifest must not make rewardkit read files
        anywhere)."""
        from rewardkit.checks import confined

        base = Path(self.audio_dir or src.base_dir or Path()).expanduser()
        if src.kind in ("jsonl", "json", "tsv"):  # a manifest file (a hub set has cache paths)
            try:
                path = confined(base, value, where or src.describe())
            except RewardkitError as exc:
                raise DataError(str(exc), "audio_outside") from None
        else:
            path = Path(value).expanduser()
            path = path if path.is_absolute() else base / path
        if not path.exists():  # LibriSQA names .wav files that LibriSpeech ships as .flac
            from rewardkit.audio import SUPPORTED_EXTENSIONS

            for ext in SUPPORTED_EXTENSIONS:
                if path.with_suffix(ext).is_file():
                    return path.with_suffix(ext)
        return path

    # --- prompts ---

    @abstractmethod
    def template_values(self, example: Example) -> dict[str, str]:
        """The ``{field}`` values that fill the templates for ``example``."""

    def template_for(self, example: Example) -> str:
        """The template of this example: fixed per example id."""
        return self.templates[template_index(example.id, len(self.templates))]

    def instruction(self, example: Example) -> str:
        """The instruction text, with :data:`AUDIO_PLACEHOLDER` where the audio goes."""
        values = {
            k: v.replace(AUDIO_PLACEHOLDER, "audio")
            for k, v in self.template_values(example).items()
        }
        return self.template_for(example).format(**values)

    def load_audio(self, example: Example, sampling_rate: int = 16_000) -> np.ndarray:
        """The example's audio: mono float32 at ``sampling_rate``."""
        from rewardkit import audio as audio_lib

        if example.audio is None:
            raise DataError(f"example {example.id!r} has no audio", "missing_audio")
        where = f"example {example.id!r}"
        src = example.audio
        if isinstance(src, EmbeddedAudio):
            where, src = f"{where} ({src})", src.read()
        return audio_lib.load_audio(
            src, sampling_rate=sampling_rate, max_duration=self.max_duration, where=where
        )

    def prompt(self, example: Example, sampling_rate: int = 16_000) -> Prompt:
        """The prompt a backend receives: instruction text and audio at ``sampling_rate``."""
        from rewardkit.policy import Prompt

        audio = self.load_audio(example, sampling_rate) if example.audio is not None else None
        return Prompt(self.instruction(example), audio, sampling_rate, example.id)
