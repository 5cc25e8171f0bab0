"""DDP with 2 CPU processes (gloo): ranks draw different samples and end with identical weights."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent('''
    import hashlib, json, sys
    from pathlib import Path
    import lightning as L
    sys.path.insert(0, {tests!r})
    from conftest import TINY_NET
    from sat.data.module import SATDataModule
    from sat.model import build_model
    from sat.training.module import SATSegmentation

    out, cache = Path({out!r}), Path({cache!r})

    class Record(L.Callback):
        keys = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.keys.extend(batch["key"])

        def on_train_end(self, trainer, pl_module):
            blob = b"".join(v.detach().numpy().tobytes() for v in pl_module.net.state_dict().values())
            info = {{"keys": self.keys, "hash": hashlib.sha256(blob).hexdigest(), "world": trainer.world_size}}
            (out / f"rank{{trainer.global_rank}}.json").write_text(json.dumps(info))

    L.seed_everything(0, verbose=False)
    dm = SATDataModule(str(cache), query_cache=str(cache / "queries.safetensors"), patch_size=(16, 16, 8),
                       batch_size=2, queries_per_sample=3, steps_per_epoch=2, augment=False)
    module = SATSegmentation(build_model(TINY_NET), lr=0.01, warmup_steps=0)
    trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[Record()])
    trainer.fit(module, datamodule=dm)
''')


@pytest.mark.slow
def test_ddp_two_cpu_ranks(tmp_path, toy_cache):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path), cache=str(toy_cache)))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert len(r0["keys"]) == len(r1["keys"]) == 6  # 3 steps x batch 2 on each rank
    assert not set(r0["keys"]) & set(r1["keys"])  # different samples on each rank
    assert r0["hash"] == r1["hash"]  # gradients were all-reduced: identical weights
