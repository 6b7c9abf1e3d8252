"""The evaluator: the measuring instrument behind FID, R-Precision, MM-Dist, Diversity,
MultiModality and the emotion F1. Like Guo et al.'s evaluator on HumanML3D, it is trained once, on
the train splits of all scenarios, and then frozen.

`Evaluator` (api.py) is what the rest of l2emg uses; `EvaluatorNet` (net.py) is its network;
`train_evaluator` (train.py) trains it.
"""

from l2emg.eval.evaluator.api import Evaluator
from l2emg.eval.evaluator.net import EvaluatorNet
from l2emg.eval.evaluator.train import train_evaluator, train_evaluator_on

__all__ = ["Evaluator", "EvaluatorNet", "train_evaluator", "train_evaluator_on"]
