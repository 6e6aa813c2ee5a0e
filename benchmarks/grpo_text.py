"""Shared pieces of the benchmarks: GRPO-shaped English sentences and their noisy variants
(the model-reward benchmarks) and a description of the machine (all of them). Imported by the
scripts beside it (run them as ``python benchmarks/<script>.py``, which puts this folder on
``sys.path``)."""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "It is a guide to action that ensures the military will always heed party commands.",
    "My car broke down on the highway, so I called a big tow truck from the next town.",
    "The automobile industry employs millions of people around the world.",
    "Please send the quarterly report by Friday; we need it for the board meeting.",
    "He said he would be there at five in the afternoon, but he never came.",
    "Running, jumping and swimming are the three events of the race this year.",
    "The children were playing happily in the large garden behind the old house.",
    "A fast car is not always a safe car, especially in heavy rain at night.",
    "Why didn't you tell me before the meeting that the budget had been cut?",
    "Doctor Smith's lab published three papers last year, each cited over a hundred times.",
    "The weather today is sunny with a high of twenty five degrees and light winds.",
    "We walked along the river, watched the boats, and talked for hours.",
    "Don't forget to buy milk, eggs, bread and butter at the store on your way home.",
    "The speech model transcribed the audio and then translated it into German.",
    "Our new policy starts on Monday and applies to all staff in every office.",
    "The cats sat on the mat while the dogs slept quietly by the fire.",
    "The museum will be closed for renovation until the end of next month.",
    "She asked whether the train to Berlin leaves from platform three or four.",
    "According to the speaker, the main cause of the delay was a shortage of parts.",
    "The lecture explains how vaccines train the immune system to recognise viruses.",
    "Most of the participants agreed that the new schedule was easier to follow.",
    "The answer is that the water boils at a lower temperature in the mountains.",
    "In the interview, the author describes growing up on a small farm in Ireland.",
]
FILLERS = ["very", "also", "the", "really", "a", "quite", "not", "maybe", "then", "just"]


def perturb(text: str, rng: random.Random, strength: float, vocabulary: list[str]) -> str:
    """A near-duplicate: each word is, with probability ``strength``, substituted, deleted,
    duplicated or swapped with its neighbour. Never empty."""
    out: list[str] = []
    for word in text.split():
        if rng.random() >= strength:
            out.append(word)
            continue
        action = rng.choice(["sub", "del", "dup", "swap"])
        if action == "sub":
            out.append(rng.choice(FILLERS + vocabulary))
        elif action == "dup":
            out += [word, word]
        elif action == "swap" and out:
            out.insert(len(out) - 1, word)
    return " ".join(out) or text.split()[0]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}
