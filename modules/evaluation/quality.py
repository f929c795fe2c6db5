"""Quality: DNSMOS P.835 (SIG, BAK, OVRL) and P.808 MOS, from the ONNX files inside the `speechmos` wheel.

These are the same two networks as the original's baselines/dnsmos (sig_bak_ovr.onnx, model_v8.onnx),
non-personalised. The protocol is Microsoft's DNSMOS one: audio shorter than 9.01 s is repeated until it is
long enough; scores are averaged over 9.01 s windows taken every second; the P.835 outputs are mapped
through the published polynomials. The P.808 input is a 120-band log-mel computed with librosa, as speechmos
does (the original computed it with torchaudio's MelSpectrogram, which differs in the filter normalisation).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from modules.evaluation.common import EVAL_RATE, ModelCard, is_cuda, package_version, require

WINDOW_SECONDS = 9.01
# Non-personalised P.835 calibration polynomials (highest power first), as published with DNSMOS.
_POLY = {"sig": (-0.08397278, 1.22083953, 0.0052439), "bak": (-0.13166888, 1.60915514, -0.39604546),
         "ovrl": (-0.06766283, 1.11546468, 0.04602535)}


class DNSMOS:
    name = "dnsmos"

    def __init__(self, device: torch.device | str = "cpu"):
        ort = require("onnxruntime", "onnxruntime")
        speechmos = require("speechmos", "speechmos")
        folder = Path(speechmos.__file__).parent / "dnsmos_models"
        providers = ["CPUExecutionProvider"]
        if is_cuda(torch.device(device)) and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        # No busy-waiting between runs: spinning threads fight torch's own for the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.p835 = ort.InferenceSession(str(folder / "sig_bak_ovr.onnx"), options, providers=providers)
        self.p808 = ort.InferenceSession(str(folder / "model_v8.onnx"), options, providers=providers)
        self.card = ModelCard("DNSMOS", "DNSMOS P.835 sig_bak_ovr.onnx + P.808 model_v8.onnx, non-personalised",
                              f"{package_version('speechmos')}, {package_version('onnxruntime')}")

    @staticmethod
    def _p808_features(segment: np.ndarray) -> np.ndarray:
        import librosa
        mel = librosa.feature.melspectrogram(y=segment, sr=EVAL_RATE, n_fft=321, hop_length=160, n_mels=120)
        return ((librosa.power_to_db(mel, ref=np.max) + 40) / 40).T           # [frames, 120]

    def score(self, wave_16k: np.ndarray) -> dict[str, float]:
        """{'sig', 'bak', 'ovrl', 'p808'} of a 16 kHz wave."""
        audio = np.asarray(wave_16k, dtype=np.float32)
        window = int(WINDOW_SECONDS * EVAL_RATE)
        while audio.size < window:
            audio = np.concatenate([audio, audio])
        n_windows = int(np.floor(audio.size / EVAL_RATE) - WINDOW_SECONDS) + 1
        raw, p808 = [], []
        for index in range(n_windows):
            segment = audio[index * EVAL_RATE: index * EVAL_RATE + window]
            if segment.size < window:
                continue
            raw.append(self.p835.run(None, {"input_1": segment[None]})[0][0])
            features = self._p808_features(segment[:-160]).astype(np.float32)[None]
            p808.append(self.p808.run(None, {"input_1": features})[0][0][0])
        raw = np.asarray(raw, dtype=np.float64)                                 # [windows, 3] sig, bak, ovrl
        scores = {key: float(np.mean(np.polyval(_POLY[key], raw[:, i]))) for i, key in enumerate(("sig", "bak", "ovrl"))}
        scores["p808"] = float(np.mean(p808))
        return scores
