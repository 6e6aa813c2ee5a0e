"""Converters from inference-engine formats to plain transformers checkpoints.

- :mod:`rewardkit.convert.ctranslate2_whisper`: CTranslate2 ``model.bin`` (Whisper) to a
  ``WhisperForConditionalGeneration`` directory, and the reverse writer used by the tests.
- :mod:`rewardkit.convert.gguf_llama`: a llama.cpp GGUF file (``llama`` architecture, any
  quantisation gguf-py can dequantise) to a plain ``LlamaForCausalLM`` directory, and a GGUF writer.

Each converter writes an ordinary ``save_pretrained`` directory (weights, config, tokenizer), so the
rest of rewardkit loads converted weights exactly like any local checkpoint. torch, transformers
and gguf are imported inside the functions.
"""
