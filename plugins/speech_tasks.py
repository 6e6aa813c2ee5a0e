"""Built-in task adapters: ``speech_translation``, ``spoken_qa`` and ``asr``.

Both read the data sources described in :mod:`rewardkit.tasks` (JSONL manifests, ``datasets``
directories, parquet files, hub names), with column defaults that fit CoVoST2 and LibriSQA, and
build instructions with an ``<audio>`` placeholder from several templates, one per example id.
Audio is decoded only when a prompt is made, so importing this module stays light.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import rewardkit
from rewardkit.tasks import Example, Task

#: Language codes (CoVoST2's among them) -> names used in instructions; others print as given.
LANGUAGES = {
    "ar": "Arabic",
    "ca": "Catalan",
    "cy": "Welsh",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "fa": "Persian",
    "fr": "French",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "lv": "Latvian",
    "mn": "Mongolian",
    "nl": "Dutch",
    "pt": "Portuguese",
    "ru": "Russian",
    "sl": "Slovenian",
    "sv": "Swedish",
    "ta": "Tamil",
    "tr": "Turkish",
    "zh": "Chinese",
}

_ID = ("id", "utt_id", "uid", "key")


def language_name(code: str) -> str:
    """``de`` -> ``German``; ``zh-CN`` -> ``Chinese``; unknown codes or names stay as given."""
    return LANGUAGES.get(code.split("-")[0].split("_")[0].lower(), code)


class SpeechTranslation(Task):
    """Speech translation: source-language speech in, target-language text out.

    References are the translations; the transcript is kept as the source text (for COMET).
    Languages come from the row's ``src_lang``/``tgt_lang`` or the task options.
    """

    name = "speech_translation"
    default_columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "id": _ID,
        "audio": ("audio", "audio_path", "audio_filepath", "path", "file", "speech_path"),
        "transcript": ("transcript", "sentence", "source_text", "src_text", "text"),
        "translation": ("translation", "translations", "target_text", "tgt_text", "target"),
        "src_lang": ("src_lang", "source_lang", "src_language", "source_language"),
        "tgt_lang": ("tgt_lang", "target_lang", "tgt_language", "target_language"),
    }
    reference_field = "translation"
    source_field = "transcript"
    optional_fields = ("src_lang", "tgt_lang")
    template_fields = ("source_language", "target_language")
    builtin_templates = (
        "Listen to the audio <audio> and translate it into {target_language}.",
        "<audio> Translate this {source_language} speech into {target_language}.",
        "Translate the {source_language} audio <audio> into {target_language}.",
        "Here is a recording in {source_language}: <audio> Write its {target_language} "
        "translation.",
        "Listen to <audio> and give the {target_language} translation of what is said.",
    )

    def __init__(
        self,
        *,
        src_lang: str = "en",
        tgt_lang: str = "de",
        max_duration: float | None = 30.0,
        columns: str | None = None,
        audio_dir: str | None = None,
        subset: str | None = None,
        templates: Literal["varied", "fixed"] = "varied",
        template: str | None = None,
    ):
        """``src_lang``, ``tgt_lang``: language codes (or names) for rows that give none; the
        other options are :class:`rewardkit.tasks.Task`'s."""
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        super().__init__(
            max_duration=max_duration,
            columns=columns,
            audio_dir=audio_dir,
            subset=subset,
            templates=templates,
            template=template,
        )

    def field_defaults(self) -> dict[str, str]:
        return {"src_lang": self.src_lang, "tgt_lang": self.tgt_lang}

    def template_values(self, example: Example) -> dict[str, str]:
        return {
            "source_language": language_name(example.fields.get("src_lang", self.src_lang)),
            "target_language": language_name(example.fields.get("tgt_lang", self.tgt_lang)),
        }


class SpokenQA(Task):
    """Spoken question answering: a spoken passage and a written question in, an answer out.

    References are the answers; the passage's transcript, when given, is kept as the source.
    """

    name = "spoken_qa"
    default_columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "id": _ID,
        "audio": ("audio", "speech_path", "audio_path", "audio_filepath", "path", "file"),
        "question": ("question", "query"),
        "answer": ("answer", "answers", "response"),
        "transcript": ("transcript", "text", "passage", "context", "sentence"),
    }
    reference_field = "answer"
    source_field = "transcript"
    required_fields = ("question",)
    template_fields = ("question",)
    builtin_templates = (  # the first is the paper's
        "Listen to the audio <audio> and answer the following question: {question}",
        "<audio> Answer this question about the recording: {question}",
        "Here is a spoken passage: <audio> {question}",
        "Based on what is said in the audio <audio>, answer: {question}",
        "Listen carefully to <audio>. Then answer the question: {question}",
    )

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
        """Options: see :class:`rewardkit.tasks.Task`."""
        super().__init__(
            max_duration=max_duration,
            columns=columns,
            audio_dir=audio_dir,
            subset=subset,
            templates=templates,
            template=template,
        )

    def template_values(self, example: Example) -> dict[str, str]:
        return {"question": example.fields["question"]}


class SpeechRecognition(Task):
    """Speech recognition: speech in, its transcript out (references are the transcripts).

    The stage that teaches a freshly assembled model to listen: supervised on transcripts, the
    projector (and LoRA) learn to map the encoder's output into the LM's input space. Any
    manifest with a transcript column works, the translation and QA sets included.
    """

    name = "asr"
    default_columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "id": _ID,
        "audio": ("audio", "audio_path", "audio_filepath", "path", "file", "speech_path"),
        "transcript": ("transcript", "sentence", "text", "source_text", "src_text"),
    }
    reference_field = "transcript"
    builtin_templates = (
        "Transcribe the audio <audio>",
        "<audio> Write down exactly what is said.",
        "What is said in this recording? <audio>",
        "Listen to <audio> and write its transcript.",
        "Here is a recording: <audio> Transcribe it word for word.",
    )

    def template_values(self, example: Example) -> dict[str, str]:
        return {}


@rewardkit.hookimpl
def register_tasks(register):
    register(SpeechTranslation)
    register(SpokenQA)
    register(SpeechRecognition)
