"""The embedded procedural emotional-motion benchmark.

`generate_motions(config)` yields `SynthMotion`s (world joints on the 22-joint skeleton, labels,
captions) for eight scenarios and seven emotions; see `generator.py` for how labels are planned,
`actions.py` for the action catalogue and `emotions.py` for the emotion signatures.
"""

from l2emg.data.synth.actions import ACTIONS, ACTIONS_BY_SCENARIO, Action
from l2emg.data.synth.generator import MotionSpec, SynthMotion, generate_motions, plan_motions, synthesize

__all__ = ["ACTIONS", "ACTIONS_BY_SCENARIO", "Action", "MotionSpec", "SynthMotion", "generate_motions",
           "plan_motions", "synthesize"]
