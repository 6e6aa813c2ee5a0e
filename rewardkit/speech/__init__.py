"""Offline speech synthesis for rewardkit's embedded spoken data sets.

``espeak`` wraps libespeak-ng (from the ``espeakng-loader`` wheel) through ctypes; ``make``
voices the template text of :mod:`rewardkit.textdata` into 16 kHz wav files with JSONL manifests
(``rewardkit data make``). Nothing here is imported by ``rewardkit --help``.
"""
