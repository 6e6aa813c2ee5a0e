"""The built-in ``text`` task: a text prompt in, text out, scored against one or more references.

For GRPO on any causal LM (no audio): each row holds a prompt, its reference(s) and optionally a
source text (kept as ``Example.source``, for rewards such as COMET). The backend renders the
prompt with the model's chat template (without one: ``User: ...\\nAssistant:``). Data: JSONL or
JSON (``prompt``, ``reference`` as a text or a list, ``source``, ``id``), TSV with a header row
(repeat the ``reference`` column for several references), ``datasets`` directories, parquet or
hub names, as described in :mod:`rewardkit.tasks`; other column names are tried (see
``default_columns``) or mapped with ``columns=prompt:question;reference:answer``. A ``template``
may wrap the prompt, e.g. ``template=Translate into German: {source}`` or ``Q: {prompt} A:``.
"""

from __future__ import annotations

from typing import ClassVar

import rewardkit
from rewardkit.tasks import Example, Task


class TextTask(Task):
    """Text in, text out: ``prompt`` -> completion, scored against ``reference``(s)."""

    name = "text"
    default_columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "id": ("id", "uid", "key"),
        "prompt": ("prompt", "instruction", "input", "question", "query"),
        "reference": ("reference", "references", "answer", "answers", "target", "output"),
        "source": ("source", "source_text", "src_text"),
    }
    reference_field = "reference"
    source_field = "source"
    required_fields = ("prompt",)
    audio_required = False
    text_only = True
    template_fields = ("prompt", "source")
    builtin_templates = ("{prompt}",)

    def __init__(
        self,
        *,
        columns: str | None = None,
        subset: str | None = None,
        template: str | None = None,
    ):
        """``columns``: ``field:column`` overrides (fields: id, prompt, reference, source).
        ``subset``: the hub configuration. ``template``: wraps the prompt, with ``{prompt}``
        and ``{source}`` placeholders (default ``{prompt}``: the prompt as it is)."""
        super().__init__(max_duration=None, columns=columns, subset=subset, template=template)

    def template_values(self, example: Example) -> dict[str, str]:
        return {"prompt": example.fields["prompt"], "source": example.source or ""}


@rewardkit.hookimpl
def register_tasks(register):
    register(TextTask)
