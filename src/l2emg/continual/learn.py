"""`l2emg learn`: a finished method run learns one more scenario from a dataset of its own.

The method's lifecycle continues where its stream stopped: step N (after the stream's N steps, or
after earlier learned scenarios) restores the final checkpoint, runs `begin_scenario(N)` — for
ES-MoE a new expert and key, and CGED's dictionary grows from the new data only —, trains on the new
scenario's training motions with the stream's settings (same epochs, optimiser, seeds derived from
the step), and evaluates on every scenario's test set, the old ones and the new one. The results
gain a row (and a column), the report is written again, and `adapter.json` points to the new
checkpoint, so `l2emg generate` uses it. A killed learn resumes when started again with the same
arguments.

The new motions are encoded with the run's tokenizer. Real motion is usually far from the embedded
benchmark the tokenizer was trained on; the reconstruction error on the new data is measured and,
when it is far above the run's own test error, reported loudly (the remedy: train the tokenizer on
data that includes real motion, `l2emg tokenizer train`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from l2emg.continual.learned import read_learned, record_learned
from l2emg.continual.trainer import StreamTrainer
from l2emg.data.reader import load_dataset
from l2emg.errors import ConfigError, DataError
from l2emg.runs import MethodRunDir, RunDir
from l2emg.utils.io import atomic_save_dir, load_json, save_json

console = Console(stderr=True)

TOKENIZER_WARNING_RATIO = 2.0  # new data's MPJPE above this multiple of the run's own: say so loudly


def tokenizer_check(run: RunDir, tokenizer: Any, dataset: Any) -> dict[str, Any]:
    """Reconstruction MPJPE of the run's tokenizer on the new data against the run's own test MPJPE."""
    from l2emg.tokenizer.evaluate import evaluate_tokenizer

    split = "test" if dataset.split("test") else "train"
    new = evaluate_tokenizer(tokenizer, dataset, split)
    own = load_json(run.tokenizer_eval_path)["mpjpe_mm"] if run.tokenizer_eval_path.exists() else None
    ratio = new["mpjpe_mm"] / own if own else None
    return {"split": split, "mpjpe_mm": new["mpjpe_mm"], "run_test_mpjpe_mm": own,
            "ratio": None if ratio is None else round(ratio, 2),
            "out_of_domain": bool(ratio is not None and ratio > TOKENIZER_WARNING_RATIO)}


class ScenarioLearner(StreamTrainer):
    """A `StreamTrainer` over a finished method run that adds one learned scenario."""

    def __init__(self, run: RunDir, method_run: MethodRunDir, progress: bool = True, accelerator: Any = None):
        from l2emg.config import read_saved_config

        config = read_saved_config(method_run.config_path)
        method, _ = method_run.final_checkpoint()
        super().__init__(run, config, method, config.stream.split, config.stream.order,
                         progress=progress, accelerator=accelerator)
        if self.method_run.path != method_run.path:
            raise ConfigError(f"{method_run.config_path}: the config names another method run "
                              f"({self.method_run.name}); this folder's config was edited")

    def learn(self, data: str | Path, scenario: str) -> dict[str, Any]:
        """Learn `scenario` from the dataset folder `data`; return the updated results."""
        from l2emg.continual.methods import method_class

        if method_class(self.method_name).joint_training:
            raise ConfigError(f"{self.method_run.name}: {self.method_name} trains jointly on all scenarios at once; "
                              f"learning one more scenario is for continual methods (train MTL again instead)")
        with self.method_run.lock():
            self.method_run.clean_leftovers()
            results = load_json(self.method_run.results_path)
            entries = {e["scenario"]: e for e in read_learned(self.method_run)}
            if scenario in entries:  # started before: resume it, or finish what a kill left undone
                step = int(entries[scenario]["step"])
                _, final = self.method_run.final_checkpoint()
                if final == self.method_run.checkpoint_dir(step) or self.finished_steps() > step + 1:
                    raise ConfigError(f"{self.method_run.learned_path}: scenario {scenario!r} was already learned "
                                      f"(step {step + 1}); choose another --scenario name")
            elif scenario in results["scenarios"]:
                raise ConfigError(f"{self.method_run.results_path}: the run already has a scenario named "
                                  f"{scenario!r}; choose another --scenario name")
            else:
                step = len(results["steps"])
                self._import(Path(data), scenario, step)
            return self._learn_step(results, scenario, step)

    def _import(self, data: Path, scenario: str, step: int) -> None:
        """Copy the dataset into the method run, encode it, check the tokenizer on it; record the entry."""
        from l2emg.tokenizer.api import MotionTokenizer

        dataset = load_dataset(data)
        if not dataset.split("train"):
            raise DataError(f"{data}: no motions in train.txt; a scenario is learned from its train split")
        own = load_dataset(self.run.data_dir).feature_convention
        if dataset.feature_convention != own:
            raise DataError(f"{data / 'dataset.json'}: feature_convention {dataset.feature_convention!r}, the run's "
                            f"data uses {own!r}; import it again with --convention {own}")
        target = self.method_run.learned_data_dir(scenario)
        atomic_save_dir(target, lambda staging: shutil.copytree(data, staging, dirs_exist_ok=True))
        dataset = load_dataset(target)
        tokenizer = MotionTokenizer.from_pretrained(self.run.tokenizer_dir)
        ids = [r.motion_id for r in dataset.records]
        codes = tokenizer.encode_motions([dataset.features(i) for i in ids], names=ids)
        save_json(self.method_run.learned_codes_path(scenario), {i: [int(c) for c in code] for i, code in zip(ids, codes)})
        check = tokenizer_check(self.run, tokenizer, dataset)
        if check["out_of_domain"]:
            console.print(f"[bold red]warning[/]: the run's tokenizer reconstructs {data} with "
                          f"{check['mpjpe_mm']:.1f} mm MPJPE ({check['split']} split), {check['ratio']:.1f}× its own test "
                          f"error ({check['run_test_mpjpe_mm']:.1f} mm): these motions are outside what it learned, "
                          f"and the generator can only produce what the tokenizer decodes. Train the tokenizer on "
                          f"data that includes such motion (docs/guide.md, 'Bring your own data').")
        else:
            console.print(f"tokenizer on the new data: {check['mpjpe_mm']:.1f} mm MPJPE ({check['split']} split; "
                          f"the run's own test error {check['run_test_mpjpe_mm']} mm)")
        entry = {"scenario": scenario, "step": step, "source": str(data.resolve()), "motions": len(ids),
                 "splits": {s: len(dataset.split(s)) for s in ("train", "val", "test")}, "tokenizer": check}
        record_learned(self.method_run, entry)

    def _learn_step(self, results: dict[str, Any], scenario: str, step: int) -> dict[str, Any]:
        done = self.finished_steps()
        if done <= step:  # train step `step` from the checkpoint before it
            self._load()  # the stream plus every learned scenario, this one included
            subset = self.stream.subsets[step]
            if subset.name != scenario:
                raise ConfigError(f"{self.method_run.learned_path}: step {step + 1} is {subset.name!r}, not {scenario!r}")
            self._load_checkpoint(step - 1)
            console.print(f"[bold]{self.method_run.name}[/]: learning {scenario!r} as step {step + 1} "
                          f"({len(subset.train)} training motions)")
            log = self.train_step(step, scenario, subset.train, subset)
            self._save_checkpoint(step, log)
            evaluation = self.evaluate(step)
            results["scenarios"] = [*results["scenarios"][:step], scenario]
            results["steps"] = results["steps"][:step] + [
                {"scenario": scenario, "train": {k: v for k, v in log.items() if k != "loss"}, **evaluation}]
            results["learned"] = [e["scenario"] for e in read_learned(self.method_run)]
            save_json(self.method_run.results_path, results)
            save_json(self.method_run.progress_path, {"finished_steps": step + 1, "total_steps": step + 1,
                                                      "environment": self._environment(),
                                                      "stages": self.run.stage_fingerprint()})
        else:
            self._load()
        self.method_run.mark_finished(self.method_name, step)
        self.write_report(results)
        return results


def learn_scenario(run_dir: str | Path, method: str | None, data: str | Path, scenario: str,
                   progress: bool = True) -> dict[str, Any]:
    """`l2emg learn`: the finished method run `method` of `run_dir` learns `scenario` from `data`."""
    run = RunDir(run_dir)
    if not run.config_path.exists():
        raise ConfigError(f"{run.path}: not a run folder (no config.yaml); train a method first with `l2emg run`")
    if not scenario.strip():
        raise ConfigError("--scenario: give the new scenario a name")
    method_run = run.find_method_run(method)
    if method_run is None:
        raise ConfigError(f"{run.methods_dir}: no finished method run; train one first (`l2emg train`)")
    return ScenarioLearner(run, method_run, progress=progress).learn(data, scenario.strip())
