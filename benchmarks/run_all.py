"""Run every benchmark script in this folder (each prints its numbers and saves JSON in results/).

`conditioning.py` is left out: it needs a run whose shared stages are done and trains for about half
an hour (`python benchmarks/conditioning.py --run-dir runs/default`). So is `studio_latency.py`: it
needs a run with a finished method (`python benchmarks/studio_latency.py --run runs/default`), and
`esmoe_gate.py`, which needs a finished ES-MoE run (`python benchmarks/esmoe_gate.py --run-dir runs/default`),
and `caption_probe.py`, which needs a finished method run (`python benchmarks/caption_probe.py --run-dir runs/default`);
likewise `paraphrase.py`, `free_text.py` and `precision_agreement.py` (finished method runs), `backbones.py`
(collects finished runs), `stream_profile.py` (whole method runs, before/after), `protocol.py` (finished
method runs, evaluated again), `baseline_settings.py` (collects two-scenario runs) and `results.py` (writes
docs/results.md from the JSON: `make results`)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in ("run_all.py", "conditioning.py", "studio_latency.py",
                                                                     "esmoe_gate.py", "caption_probe.py",
                                                                     "stream_profile.py", "results.py",
                                                                     "backbones.py", "paraphrase.py",
                                                                     "free_text.py", "precision_agreement.py",
                                                                     "protocol.py", "baseline_settings.py"))
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
