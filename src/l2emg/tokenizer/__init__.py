"""The T2M-GPT-style VQ-VAE motion tokenizer: 263-d features (B, T) <-> motion codes (B, T/4).

`MotionTokenizer` (api.py) is what the rest of l2emg uses; `train_tokenizer`
(train.py) train it; `evaluate_tokenizer` (evaluate.py) measures it.
"""

from l2emg.tokenizer.api import MotionTokenizer
from l2emg.tokenizer.evaluate import evaluate_tokenizer
from l2emg.tokenizer.train import train_tokenizer

__all__ = ["MotionTokenizer", "evaluate_tokenizer", "train_tokenizer"]
