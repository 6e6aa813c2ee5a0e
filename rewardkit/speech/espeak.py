"""A small ctypes wrapper around libespeak-ng (eSpeak NG), for offline, reproducible speech.

The library and its voice data come from the ``espeakng-loader`` wheel on PyPI (no apt needed);
without it a system ``libespeak-ng`` is used if ctypes can find one. eSpeak NG runs in
synchronous retrieval mode (``AUDIO_OUTPUT_SYNCHRONOUS``): ``espeak_Synth`` returns once the
whole text is spoken, and the samples (16-bit mono at 22.05 kHz) arrive through the synth
callback.

Reproducibility. libespeak-ng keeps state in C statics (pitch flutter phase, wave generator and
echo buffers) that survive ``espeak_Terminate``, and its noise generator (used by the breathy
variants) keeps running, so the same text spoken twice in one process comes out slightly
different and each call depends on everything spoken before. :meth:`Espeak.synthesize`
therefore loads the library afresh for every call (``dlopen``, initialise, speak, terminate,
``dlclose``) and reseeds the noise generator, so its output depends only on its arguments and
the library version. This holds only while nothing else in the process keeps libespeak-ng
loaded (a warning says so when it is). A fresh load costs about 0.5 ms; a voice looked up by
name would add about 2 ms (eSpeak reads all its voice files), which voice aliases in a mirror of
the data folder avoid (:meth:`Espeak._alias`).

Thread and process safety. libespeak-ng is one global state per process and is not thread-safe:
calls in one process are serialised by a module lock (threads gain nothing). For parallelism use
processes; each one loads its own copy, and forked children are fine since nothing stays loaded
between calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rewardkit.errors import RewardkitError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "INSTALL_HINT",
    "SAMPLE_RATE",
    "Espeak",
    "Library",
    "default",
    "find_library",
    "synthesize",
]

SAMPLE_RATE = 22050  # what libespeak-ng produces
INSTALL_HINT = "pip install espeakng-loader"

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH = 1, 3
_EE_OK = 0
_BUFFER_MS = 1000  # audio per callback
_RTLD_NOLOAD = getattr(os, "RTLD_NOLOAD", 4)
_RAND_SEED = 1

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Library:
    """Where libespeak-ng is: the shared library, its data folder (None: the library's
    built-in default) and where both came from ("espeakng-loader 0.2.4" or "system")."""

    path: str
    data: str | None
    origin: str


def find_library() -> Library:
    """libespeak-ng from ``espeakng-loader``, else from the system; RewardkitError if neither."""
    try:
        import espeakng_loader
    except ImportError:
        path = ctypes.util.find_library("espeak-ng")
        if path is None:
            raise RewardkitError(f"eSpeak NG is not installed: {INSTALL_HINT}") from None
        return Library(path, None, "system")
    from importlib.metadata import PackageNotFoundError, version

    try:
        data = espeakng_loader.get_data_path()
    except RuntimeError as exc:
        raise RewardkitError(f"eSpeak NG voice data is missing ({exc}): {INSTALL_HINT}") from None
    try:
        origin = f"espeakng-loader {version('espeakng-loader')}"
    except PackageNotFoundError:  # pragma: no cover - imported but not installed as a dist
        origin = "espeakng-loader"
    return Library(espeakng_loader.get_library_path(), data, origin)


def _seed(lib: ctypes.CDLL) -> None:
    """Reset the noise generator (breathy variants such as +f2, +f3, +f5 use it): its state
    otherwise depends on earlier calls (observed even across a reload)."""
    try:
        seed = lib.espeak_ng_SetRandSeed  # eSpeak NG >= 1.52
    except AttributeError:  # older versions draw from the C library's rand()
        ctypes.CDLL(None).srand(_RAND_SEED)
    else:
        seed.argtypes = [ctypes.c_long]
        seed(_RAND_SEED)


def _close(lib: ctypes.CDLL) -> None:
    import _ctypes

    close = getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary  # POSIX / Windows
    close(lib._handle)


def _mirror(library: Library, version: str) -> Path | None:
    """A data folder that mirrors ``library.data`` through symlinks, with a real ``lang/``
    folder to hold voice aliases (see :meth:`Espeak._alias`); None where it cannot be made.

    Made once in rewardkit's cache, keyed by data path, origin and version.
    """
    import hashlib
    import shutil
    import tempfile

    from rewardkit.wheels import cache_dir

    if library.data is None:
        return None
    real = Path(library.data).resolve()
    key = hashlib.sha256(f"{real}|{library.origin}|{version}".encode()).hexdigest()[:16]
    root = cache_dir() / "espeak-ng" / key
    if (root / ".complete").exists():
        return root / "espeak-ng-data" if (root / "espeak-ng-data" / "phontab").is_file() else None
    tmp: Path | None = None
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{key}."))
        mirror = tmp / "espeak-ng-data"
        mirror.mkdir()
        for entry in real.iterdir():
            if entry.name != "lang":
                (mirror / entry.name).symlink_to(entry)
        (mirror / "lang").mkdir()
        for entry in (real / "lang").iterdir():
            (mirror / "lang" / entry.name).symlink_to(entry)
        (tmp / ".complete").write_text(f"{real}\n{library.origin}\n{version}\n")
        os.rename(tmp, root)  # fails if another process finished first: use theirs
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return root / "espeak-ng-data" if (root / ".complete").exists() else None


class Espeak:
    """Speaks English (or any eSpeak NG language) into float32 arrays at 22.05 kHz.

    ``voice`` is an eSpeak NG voice name, optionally with a variant: ``"en-us"``, ``"en"``
    (British), ``"en-GB-x-rp"``, ``"en-us+f3"``, ``"en+m2"``; ``rate`` is words per minute
    (80-450, eSpeak's default 175); ``pitch`` is 0-100 around the voice's own pitch (50).
    """

    def __init__(self, library: Library | None = None, *, alias_voices: bool = True) -> None:
        self.library = library or find_library()
        self._data = self.library.data
        self._chunks: list[bytes] = []
        self._callback = _CALLBACK(self._collect)  # kept alive while the library may call it
        with _LOCK:
            lib = self._open()
            try:
                lib.espeak_Info.restype = ctypes.c_char_p
                lib.espeak_Info.argtypes = [ctypes.c_void_p]
                self.version: str = lib.espeak_Info(None).decode()
            finally:
                lib.espeak_Terminate()
                _close(lib)
        self._files: dict[str, Path] = {}  # voice file name (lowercase) -> file, for aliases
        self._aliased: set[str] = set()
        mirror = _mirror(self.library, self.version) if alias_voices else None
        if mirror is not None:
            self._data = str(mirror)
            lang = Path(self.library.data or "", "lang").resolve()
            for path in sorted(lang.glob("*/**/*")):
                if path.is_file():
                    self._files.setdefault(path.name.lower(), path)

    def synthesize(
        self, text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50
    ) -> np.ndarray:
        """``text`` spoken: float32 samples in [-1, 1) at ``self.sample_rate`` (22050) Hz."""
        import numpy as np

        if not 80 <= rate <= 450:
            raise ValueError(f"rate must be 80-450 words per minute, got {rate}")
        if not 0 <= pitch <= 100:
            raise ValueError(f"pitch must be 0-100, got {pitch}")
        data = text.encode("utf-8")
        self._alias(voice)
        with _LOCK:
            lib = self._open()
            try:
                if lib.espeak_SetVoiceByName(voice.encode("utf-8")) != _EE_OK:
                    raise RewardkitError(
                        f"eSpeak NG has no voice {voice!r} (try en-us, en, en-us+f3)"
                    )
                lib.espeak_SetParameter(_RATE, rate, 0)
                lib.espeak_SetParameter(_PITCH, pitch, 0)
                _seed(lib)
                self._chunks = []
                status = lib.espeak_Synth(
                    data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
                if status != _EE_OK:
                    raise RewardkitError(f"eSpeak NG failed with status {status} on {text[:40]!r}")
                audio = b"".join(self._chunks)
            finally:
                self._chunks = []
                lib.espeak_Terminate()
                _close(lib)
        return np.frombuffer(audio, dtype=np.int16).astype(np.float32) / np.float32(32768)

    def _alias(self, voice: str) -> None:
        """Make ``lang/<name>`` in the mirror point at the voice file ``lang/<family>/<Name>``.

        eSpeak NG first tries a voice name as the file ``lang/<name>`` (lowercased); when that
        fails it reads every voice file to list them, about 2 ms per fresh load. The alias is
        the same file, so the audio is the same. Aliases are made one by one as voices are used
        (all at once would overflow eSpeak's 350-entry voice list).
        """
        name = voice.split("+", 1)[0].lower()
        if name in self._aliased or name not in self._files:
            return
        self._aliased.add(name)
        alias = Path(self._data or "", "lang", name)
        try:
            if not os.path.lexists(alias):
                alias.symlink_to(self._files[name])
        except OSError:
            pass  # made by another process meanwhile, or no symlinks: eSpeak lists its voices

    def _collect(self, wav: ctypes._Pointer, count: int, events: int) -> int:
        if wav and count > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * count))
        return 0  # 0 = go on

    def _open(self) -> ctypes.CDLL:
        """A freshly loaded and initialised library (the caller holds _LOCK)."""
        path = self.library.path
        try:
            _close(ctypes.CDLL(path, mode=_RTLD_NOLOAD))  # succeeds only if already resident
        except OSError:
            pass  # not resident: dlopen below loads clean statics
        else:
            warnings.warn(
                f"{path} is kept loaded by other code in this process; eSpeak NG output may "
                f"depend on what was spoken before",
                RuntimeWarning,
                stacklevel=3,
            )
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise RewardkitError(f"cannot load eSpeak NG ({exc}): {INSTALL_HINT}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,  # text
            ctypes.c_size_t,  # size in bytes, with the terminating NUL
            ctypes.c_uint,  # position
            ctypes.c_int,  # position type
            ctypes.c_uint,  # end position (0: none)
            ctypes.c_uint,  # flags
            ctypes.c_void_p,  # unique identifier out (unused)
            ctypes.c_void_p,  # user data
        ]
        data = self._data.encode() if self._data else None
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data, _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            lib.espeak_Terminate()
            _close(lib)
            where = self._data or "its default data folder"
            raise RewardkitError(
                f"eSpeak NG did not start (data at {where}, status {rate}): "
                f"pip install --force-reinstall espeakng-loader"
            )
        lib.espeak_SetSynthCallback(self._callback)
        self.sample_rate: int = rate
        return lib


_engine: Espeak | None = None


def default() -> Espeak:
    """This process's shared :class:`Espeak` (created on first use)."""
    global _engine
    if _engine is None:
        _engine = Espeak()
    return _engine


def synthesize(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50) -> np.ndarray:
    """``default().synthesize(...)``: ``text`` as float32 samples at 22.05 kHz."""
    return default().synthesize(text, voice, rate, pitch)
