"""The look of a rendered motion: colours, the bones and their colours, sizes in metres, supersampling.

Bones are coloured by kinematic chain (left limbs blue, right limbs red, spine and head grey); the
floor is a grey checker, the root's path orange. Shared by the camera (the head's size), the drawing,
the captions and the legend.
"""

from __future__ import annotations

from l2emg.motion.skeleton import JOINT_INDEX, KINEMATIC_CHAIN, NUM_JOINTS, PARENTS

# ---------------------------------------------------------------------------------------------- look
BACKGROUND = (255, 255, 255)
FLOOR_LIGHT = (226, 228, 232)
FLOOR_DARK = (204, 208, 215)
SHADOW = (150, 152, 158)
TRAJECTORY = (232, 150, 20)
TEXT = (30, 30, 30)
TEXT_DIM = (120, 120, 120)
NOSE = (255, 255, 255)

LEFT_LEG = (31, 100, 200)
LEFT_ARM = (70, 150, 235)
RIGHT_LEG = (200, 35, 40)
RIGHT_ARM = (240, 95, 70)
SPINE = (70, 70, 80)

# KINEMATIC_CHAIN order: right leg, left leg, spine + head, right arm, left arm.
_CHAIN_COLOURS = (RIGHT_LEG, LEFT_LEG, SPINE, RIGHT_ARM, LEFT_ARM)

HEAD = JOINT_INDEX["head"]
LEFT_HIP, RIGHT_HIP = JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]
LEFT_SHOULDER, RIGHT_SHOULDER = JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_shoulder"]

BONE_RADIUS = 0.025     # metres: bones are drawn as thick as a forearm
HEAD_RADIUS = 0.10      # metres
TILE = 0.5              # metres: floor checker size
SUPERSAMPLE = 2         # draw at this multiple of the output size, then downsample (≥ 1)


def _joint_colours() -> tuple[tuple[int, int, int], ...]:
    """Colour of the bone ending at each joint, from the chain that joint belongs to."""
    colours = [SPINE] * NUM_JOINTS
    for chain, colour in zip(KINEMATIC_CHAIN, _CHAIN_COLOURS):
        for joint in chain[1:]:
            colours[joint] = colour
    return tuple(colours)


_BONE_COLOURS = _joint_colours()
_BONES = tuple((child, PARENTS[child]) for child in range(1, NUM_JOINTS))  # (child, parent)
