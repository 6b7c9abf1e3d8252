"""The on-disk motion dataset format (HumanML3D layout): folder and file names, sizes, frame rate.

A dataset folder looks like HumanML3D, so the same loader reads the embedded benchmark, HumanML3D
itself and HumanML3D-style emotional datasets (EmotionalT2M, converted Motion-X):

    new_joints/ID.npy        (T, 22, 3) float32 joint positions, canonical frame (HumanML3D's)
    new_joint_vecs/ID.npy    (T-1, 263) float32 HumanML3D features (raw, not normalised)
    texts/ID.txt             one caption per line: `caption#word/POS word/POS ...#start#end`
    Mean.npy, Std.npy        (263,) feature statistics (HumanML3D-style, from the train split)
    train.txt val.txt test.txt all.txt   motion ids, one per line; every motion in ONE split
    labels.json              {id: {emotion, scenario, action, intensity}}   (optional for foreign data)
    dataset.json             metadata (name, fps, counts, generator seed/config, holdout pairs, ...)

`num_frames` of a record is T, the joint frame count; its feature array has T-1 rows. HumanML3D's own
folders store `new_joints/` recovered from the features, so they hold T-1 joint frames (as many as
feature rows); the reader and the checker accept both, and T is always feature rows + 1.

`dataset.json` is written last (`l2emg.data.writer.write_index`), so a folder whose build was
interrupted never looks finished. `l2emg.data.reader` opens such a folder, `l2emg.data.validate`
checks it file by file.
"""

from __future__ import annotations

FORMAT_VERSION = 1
FPS = 20
NUM_JOINTS = 22
FEATURE_DIM = 263
SPLITS: tuple[str, ...] = ("train", "val", "test")

JOINTS_DIR = "new_joints"
FEATURES_DIR = "new_joint_vecs"
TEXTS_DIR = "texts"
LABELS_FILE = "labels.json"
META_FILE = "dataset.json"
MEAN_FILE = "Mean.npy"
STD_FILE = "Std.npy"

# HumanML3D's loaders keep motions of 40..196 frames (and crop to multiples of 4 for the VQ-VAE).
HUMANML3D_MIN_FRAMES = 40
HUMANML3D_MAX_FRAMES = 196
