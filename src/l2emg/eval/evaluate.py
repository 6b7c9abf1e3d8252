"""Measuring motions with a trained evaluator: generated motions against a test split, the
real-motion reference row, and the emotion-transfer measure on held-out (scenario, emotion) pairs.

Protocol (Guo et al. 2022, as T2M-GPT's `eval_trans.py` runs it): each metric is computed R times
(`evaluator.eval_repeats`, 20 by default) with fresh random batches / pairs / generation choice, and
reported as mean ± 1.96·σ/√R. FID compares the generated motions with the *real* motions of the
same ids; R-Precision and MM-Dist pair each generated motion with the caption that produced it.
What a repetition redraws is the caller's choice: given K generations per motion, repetition r
scores generation r mod K. A continual run's evaluation (`train.eval_protocol: redrawn`) passes one
freshly generated set per repetition, each from a caption drawn at random per motion
(`generation_captions`), so the CIs include the generator's sampling noise, the caption choice and
the R-Precision batches; MultiModality then comes from its own set of generations of one caption
each (`mm_generated`, T2M-GPT: 30 generations of up to 100 captions, 10 pairs each). `fixed`, the
protocol before 2026-12-07, drew the generations once (first caption) and re-scored them.

Emotion transfer: the dataset keeps some (scenario, emotion) pairs out of training (they occur only
in that scenario's test split). Restricted to the test motions of those pairs we report the
emotion weighted F1 and top-k R-Precision (each sample scored inside the ordinary shuffled batches
of 32 of the whole evaluation, so the difficulty of a batch is the same as for the main metric).

AWF in two parts: inside the same repeats as `emotion_f1` (the same generations and predictions,
so nothing more is generated), the weighted F1 is also computed on the test motions of the trained
pairs alone (`emotion_f1_trained`) and of the held-out pairs alone (`emotion_f1_heldout`, the same
value as the transfer measure's `emotion_f1`; None where the evaluated motions have no held-out pair).
Both are summarised like every metric (mean ± 1.96·σ/√R over the repeats) and stored among
`metrics`, so a continual run's performance matrices carry them (`eval.continual_metrics`:
AWF_trained, AWF_heldout).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from l2emg.errors import DataError
from l2emg.eval import metrics as M
from l2emg.eval.evaluator import Evaluator

# emotion weighted F1 restricted to one part of the test motions: trained / held-out (scenario, emotion) pairs
EMOTION_F1_PARTS = ("emotion_f1_trained", "emotion_f1_heldout")
METRIC_KEYS = ("fid", "r_precision_top1", "r_precision_top2", "r_precision_top3", "mm_dist", "diversity",
               "multimodality", "emotion_f1", *EMOTION_F1_PARTS)


def holdout_pairs_of(dataset: Any, pairs: Sequence[Sequence[str]] | None = None) -> list[tuple[str, str]]:
    """The held-out (scenario, emotion) pairs: given ones, else the dataset's `dataset.json` ones."""
    if pairs is None:
        pairs = getattr(dataset, "metadata", {}).get("holdout_pairs") or []
    out = []
    for pair in pairs:
        if isinstance(pair, Mapping):
            out.append((str(pair["scenario"]), str(pair["emotion"])))
        else:
            scenario, emotion = pair
            out.append((str(scenario), str(emotion)))
    return out


def _as_generations(value: Any, motion_id: str) -> list[np.ndarray]:
    """A generated entry -> list of (T, 263) generations: one array, a (K, T, 263) stack, or a list."""
    if isinstance(value, np.ndarray) or hasattr(value, "detach"):
        array = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        if array.ndim == 3:
            return list(array)
        return [array]
    generations = list(value)
    if not generations:
        raise DataError(f"generated motion {motion_id!r}: no generations given")
    return [np.asarray(g) for g in generations]


def _summaries(values: dict[str, list[float]]) -> dict[str, dict[str, float] | None]:
    return {key: (M.mean_ci95(values[key]) if values.get(key) else None) for key in values}


def cache_texts(evaluator: Evaluator, texts: Sequence[str], cache: dict[Any, np.ndarray]) -> None:
    """Embed the texts `cache` lacks (one call, sorted) and keep them under ("text", text). A caller that
    scores different captions at different times (random captions per repetition) warms the cache with
    all of them at once first, so that every embedding comes from the same batches whatever ran before
    (a resumed run then scores bit-identically)."""
    new_texts = sorted({t for t in texts if ("text", t) not in cache})
    cache.update({("text", t): e for t, e in zip(new_texts, evaluator.embed_text(new_texts))})


def evaluate_motions(evaluator: Evaluator, generated: Mapping[str, Any], dataset: Any, split: str = "test",
                     ids: Sequence[str] | None = None, *, captions: Mapping[str, str | Sequence[str]] | None = None,
                     repeats: int | None = None, seed: int = 0,
                     holdout_pairs: Sequence[Sequence[str]] | None = None,
                     cache: dict[Any, np.ndarray] | None = None,
                     generation_captions: Mapping[str, Sequence[str]] | None = None,
                     mm_generated: Mapping[str, Any] | None = None,
                     embeddings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of generated motions against the real motions of the same ids in `split`.

    generated: motion id -> raw (T, 263) features, or several generations of that id (a list or a
      (K, T, 263) stack: repetition r uses generation r mod K; MultiModality needs K ≥ 2).
    ids: the ids to evaluate (default: every id of `generated`); each must be in `split`.
    captions: id -> the caption that produced the motion, or a list of captions (one drawn at random
      in each repetition). Default: the record's first caption.
    cache: a dict kept between calls (e.g. a continual run's evaluation points): the embeddings of the
      real motions (per split and id list) and of the captions are computed once and reused.
    generation_captions: id -> the caption of each of its generations (aligned with `generated[id]`):
      repetition r then scores generation r mod K against ITS caption (the redrawn protocol: one
      generation set per repetition, a caption drawn at random per motion per set); overrides `captions`.
    mm_generated: id -> several generations of ONE caption, used for MultiModality only (the T2M-GPT
      setting: N generations of up to `mm_max_texts` captions); default: the groups of `generated`;
      empty: no MultiModality.
    embeddings: a dict to fill with the evaluator embeddings behind the metrics: "real" (n, D) and
      "repeats", one (n, D) array of the generations each repetition scored (for FID pooled over
      several calls).
    Returns {"split", "num_motions", "repeats", "metrics": {name: {"mean", "ci95", "repeats"} or None},
    "transfer": {...} or None}; `metrics` includes the two parts of emotion F1 (`EMOTION_F1_PARTS`:
    trained pairs, held-out pairs; None where that part has no labelled motion).
    """
    cfg = evaluator.config
    repeats = repeats or cfg.eval_repeats
    ids = list(ids) if ids is not None else sorted(generated)
    if not ids:
        raise DataError("no motions to evaluate")
    records = []
    for motion_id in ids:
        if motion_id not in generated:
            raise DataError(f"no generated motion for {motion_id!r}")
        try:
            record = dataset.by_id(motion_id)
        except KeyError:
            raise DataError(f"{dataset.root}: generated motion {motion_id!r} is not in the dataset") from None
        if record.split != split:
            raise DataError(f"{dataset.root}: motion {motion_id!r} is in the {record.split} split, not {split}")
        records.append(record)
    n = len(ids)
    rng = np.random.default_rng(seed)

    # Embeddings: real motions, every generation, and the captions.
    cache = {} if cache is None else cache
    real_key = ("real", str(getattr(dataset, "root", "")), split, tuple(ids))
    if real_key not in cache:
        cache[real_key] = evaluator.embed_motion([dataset.features(i) for i in ids],
                                                 names=[f"real motion {i}" for i in ids])
    real = cache[real_key]
    gens = [_as_generations(generated[i], i) for i in ids]
    flat = [g for group in gens for g in group]
    flat_names = [f"generated motion {i}" + (f"[{k}]" if len(group) > 1 else "")
                  for i, group in zip(ids, gens) for k in range(len(group))]
    flat_emb, flat_probs = evaluator.embed_motion_and_emotion(flat, names=flat_names)
    offsets = np.cumsum([0] + [len(g) for g in gens])
    emb_groups = [flat_emb[offsets[k]:offsets[k + 1]] for k in range(n)]
    pred_groups = [flat_probs[offsets[k]:offsets[k + 1]].argmax(1) for k in range(n)]

    caption_options = []
    for record in records:
        given = (captions or {}).get(record.motion_id)
        options = [given] if isinstance(given, str) else list(given) if given else [record.captions[0].text]
        caption_options.append(options)
    paired = None
    if generation_captions is not None:
        paired = []
        for motion_id, group in zip(ids, gens):
            texts = list(generation_captions.get(motion_id) or [])
            if len(texts) != len(group):
                raise DataError(f"generated motion {motion_id!r}: {len(group)} generations but {len(texts)} "
                                f"generation captions")
            paired.append(texts)
    unique_texts = sorted({t for opts in caption_options + (paired or []) for t in opts})
    cache_texts(evaluator, unique_texts, cache)
    text_table = {t: cache[("text", t)] for t in unique_texts}

    emotion_index = {e: k for k, e in enumerate(evaluator.emotions)}
    intended = np.array([emotion_index.get(r.emotion, -1) if r.emotion else -1 for r in records])
    labelled = intended >= 0
    pairs = set(holdout_pairs_of(dataset, holdout_pairs))
    in_transfer = np.array([(r.scenario, r.emotion) in pairs for r in records])

    values: dict[str, list[float]] = {k: [] for k in METRIC_KEYS}
    transfer: dict[str, list[float]] = {k: [] for k in ("r_precision_top1", "r_precision_top2", "r_precision_top3",
                                                        "emotion_f1")}
    fid_cache: dict[tuple[int, ...], float] = {}
    if mm_generated is not None and not mm_generated:
        multi = []  # asked for no MultiModality set: none is reported
    elif mm_generated is not None:
        mm_groups = [_as_generations(v, k) for k, v in mm_generated.items()]
        mm_flat = evaluator.embed_motion([g for group in mm_groups for g in group],
                                         names=[f"generated motion {k} (MultiModality)" for k, group in
                                                zip(mm_generated, mm_groups) for _ in group])
        bounds = np.cumsum([0] + [len(g) for g in mm_groups])
        multi = [mm_flat[bounds[k]:bounds[k + 1]] for k in range(len(mm_groups)) if len(mm_groups[k]) >= 2]
    else:
        multi = [g for g in emb_groups if len(g) >= 2]
    if embeddings is not None:
        embeddings.update(real=real, repeats=[])
    for r in range(repeats):
        choice = tuple(r % len(g) for g in emb_groups)
        motion = np.stack([g[c] for g, c in zip(emb_groups, choice)])  # (n, D)
        if embeddings is not None:
            embeddings["repeats"].append(motion)
        predicted = np.array([p[c] for p, c in zip(pred_groups, choice)])
        if paired is not None:
            text = np.stack([text_table[texts[c]] for texts, c in zip(paired, choice)])
        else:
            text = np.stack([text_table[opts[int(rng.integers(len(opts)))] if len(opts) > 1 else opts[0]]
                             for opts in caption_options])
        if n >= 2:
            if choice not in fid_cache:
                fid_cache[choice] = M.fid(motion, real)
            values["fid"].append(fid_cache[choice])
            values["diversity"].append(M.diversity(motion, rng, cfg.diversity_pairs))
        values["mm_dist"].append(float(M.matching_distances(text, motion).mean()))
        if n >= cfg.r_precision_batch:
            hits, scored = M.r_precision_hits(text, motion, rng, cfg.r_precision_batch)
            for k in range(3):
                values[f"r_precision_top{k + 1}"].append(float(hits[scored, k].mean()))
            subset = scored & in_transfer
            if subset.any():
                for k in range(3):
                    transfer[f"r_precision_top{k + 1}"].append(float(hits[subset, k].mean()))
        if labelled.any():
            values["emotion_f1"].append(M.weighted_f1(intended[labelled], predicted[labelled]))
        if (labelled & ~in_transfer).any():
            subset = labelled & ~in_transfer
            values["emotion_f1_trained"].append(M.weighted_f1(intended[subset], predicted[subset]))
        if (labelled & in_transfer).any():
            subset = labelled & in_transfer
            heldout = M.weighted_f1(intended[subset], predicted[subset])
            values["emotion_f1_heldout"].append(heldout)
            transfer["emotion_f1"].append(heldout)
        if multi:
            values["multimodality"].append(M.multimodality(multi, rng, cfg.mm_pairs, cfg.mm_max_texts))

    result: dict[str, Any] = {
        "split": split, "num_motions": n, "repeats": repeats, "seed": seed,
        "generations_per_motion": int(max(len(g) for g in gens)),
        "metrics": _summaries(values),
        "transfer": None,
    }
    if pairs:
        result["transfer"] = {"pairs": sorted([list(p) for p in pairs]), "num_motions": int(in_transfer.sum()),
                              **_summaries(transfer)}
    return result


def reference_row(evaluator: Evaluator, dataset: Any, split: str = "test", repeats: int | None = None,
                  seed: int = 0, holdout_pairs: Sequence[Sequence[str]] | None = None,
                  noise_level: float = 0.5) -> dict[str, Any]:
    """The real-motion row (like HumanML3D's "Real motion" row) on a split, plus FID sanity checks.

    R-Precision/MM-Dist/Diversity/emotion F1 are those of the real motions with one of their
    captions drawn at random per repetition. The row's FID is between two random halves A, B of the
    real motions (a real-vs-itself FID would be 0 by construction). `sanity` compares, on the same
    random halves, FID(A, B) with FID(corrupted A, B) for Gaussian noise of `noise_level` × the
    dataset's per-group std on every feature, and for frame-shuffled motions: corruption should add
    far more than the sampling noise of FID(A, B)."""
    cfg = evaluator.config
    repeats = repeats or cfg.eval_repeats
    records = dataset.split(split)
    if len(records) < 8:
        raise DataError(f"{dataset.root}: the {split} split has {len(records)} motions; the reference row needs 8+")
    ids = [r.motion_id for r in records]
    real = {i: np.asarray(dataset.features(i)) for i in ids}
    result = evaluate_motions(evaluator, real, dataset, split, ids,
                              captions={r.motion_id: [c.text for c in r.captions] for r in records},
                              repeats=repeats, seed=seed, holdout_pairs=holdout_pairs)
    rng = np.random.default_rng(seed + 1)
    std = np.asarray(dataset.std, dtype=np.float32)
    emb = evaluator.embed_motion([real[i] for i in ids])
    noised = evaluator.embed_motion(
        [real[i] + noise_level * std * rng.standard_normal(real[i].shape).astype(np.float32) for i in ids])
    shuffled = evaluator.embed_motion([real[i][rng.permutation(len(real[i]))] for i in ids])
    fids: dict[str, list[float]] = {"halves": [], "noised": [], "shuffled": []}
    half = len(ids) // 2
    for _ in range(repeats):
        order = rng.permutation(len(ids))
        a, b = order[:half], order[half:2 * half]
        fids["halves"].append(M.fid(emb[a], emb[b]))
        fids["noised"].append(M.fid(noised[a], emb[b]))
        fids["shuffled"].append(M.fid(shuffled[a], emb[b]))
    result["metrics"]["fid"] = M.mean_ci95(fids["halves"])
    result["sanity"] = {
        "fid_two_halves": M.mean_ci95(fids["halves"]),
        "fid_noised": M.mean_ci95(fids["noised"]),
        "fid_frame_shuffled": M.mean_ci95(fids["shuffled"]),
        "noise_level": noise_level,
        "half_size": half,
        "chance_r_precision_top1": 1.0 / cfg.r_precision_batch,
    }
    result["kind"] = "reference"
    return result


def metric_means(result: dict[str, Any]) -> dict[str, float | None]:
    """{"metrics": {name: summary}} -> {name: mean} (what a continual results file stores)."""
    return {k: (v["mean"] if v else None) for k, v in result["metrics"].items()}
