"""The trainer: exact resume (also after kill -9), DDP equivalence, early stopping, checkpoints."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from speculum.train import TrainConfig, Trainer, load_checkpoint


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = x @ torch.randn(5, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return {"x": x, "y": y}


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def _loss(model, batch):
    return ((model(batch["x"]) - batch["y"]) ** 2).sum(1)


class Boom(RuntimeError):
    pass


def test_resume_after_interrupt_equals_uninterrupted(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=10, lr=1e-2, checkpoint_every=3, patience=0)
    data, val = _data(), _data(32, seed=1)
    ref = _model()
    hist_ref = Trainer(ref, _loss, cfg, tmp_path / "a").fit(data, val)

    calls = {"n": 0}

    def flaky(model, batch):
        calls["n"] += 1
        if calls["n"] == 23:  # mid-epoch 3, between checkpoints
            raise Boom
        return _loss(model, batch)

    with pytest.raises(Boom):
        Trainer(_model(), flaky, cfg, tmp_path / "b").fit(data, val)
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["state"]
    assert 0 < state["step"] < 23 and state["epoch"] == 2
    resumed = _model(seed=123)  # different init: everything must come from the checkpoint
    hist = Trainer(resumed, _loss, cfg, tmp_path / "b").fit(data, val, resume=True)
    for p, q in zip(ref.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert [h["val_loss"] for h in hist] == [h["val_loss"] for h in hist_ref]


def test_early_stopping_and_config_mismatch(tmp_path):
    cfg = TrainConfig(epochs=50, batch_size=32, lr=1e-6, patience=2)
    hist = Trainer(_model(), _loss, cfg, tmp_path).fit(_data(), _data(32, seed=1))
    assert len(hist) < 50
    other = TrainConfig(epochs=51, batch_size=32, lr=1e-6, patience=2)
    with pytest.raises(ValueError, match="training config differs"):
        Trainer(_model(), _loss, other, tmp_path).fit(_data(), resume=True)


def test_checkpoint_errors_name_the_file(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint.pt"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_bf16_autocast_runs_on_cpu(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=32, precision="bf16")
    hist = Trainer(_model(), _loss, cfg, tmp_path).fit(_data(), _data(32, seed=1))
    assert torch.isfinite(torch.tensor(hist[0]["val_loss"]))


# ---------------------------------------------------------------- through the CLI
def _speculum(*args, **kw):
    return [sys.executable, "-m", "speculum", *args]


@pytest.fixture(scope="module")
def tiny_sim(tmp_path_factory):
    from speculum.pipeline import simulate_dataset
    from speculum.sim import SimConfig

    return simulate_dataset(tmp_path_factory.mktemp("sim"), 400, SimConfig(), seed=7)


TRAIN = ["--epochs", "2", "--batch-size", "32", "--checkpoint-every", "2", "--limit", "192", "--device", "cpu"]


def _weights(run):
    return load_file(str(run / "model.safetensors"))


def test_kill_9_then_resume_equals_uninterrupted(tiny_sim, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref, run = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_speculum("train", str(tiny_sim), "--out", str(ref), *TRAIN), check=True, env=env)
    proc = subprocess.Popen(_speculum("train", str(tiny_sim), "--out", str(run), *TRAIN), env=env)
    ckpt = run / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline:
        if ckpt.exists() and load_checkpoint(ckpt)["state"]["step"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(ckpt)["state"]["step"]
    assert 3 <= step < 12, "the kill should land mid-run"
    subprocess.run(_speculum("train", str(tiny_sim), "--out", str(run), *TRAIN, "--resume"), check=True, env=env)
    a, b = _weights(ref), _weights(run)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_torchrun_ddp_equals_single_process(tiny_sim, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    args = ["--epochs", "1", "--batch-size", "32", "--limit", "128", "--device", "cpu"]
    subprocess.run(_speculum("train", str(tiny_sim), "--out", str(single), *args), check=True, env=env)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
        "-m", "speculum", "train", str(tiny_sim), "--out", str(ddp), *args,
    ]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, timeout=300)
    a, b = _weights(single), _weights(ddp)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=2e-4, atol=2e-5)


# ---------------------------------------------------------------- streamed batches
def _stream_source(data, batch_size=32):
    from speculum.train import StreamBatches

    def transform(cols):
        x = torch.from_numpy(cols["flux"][:, 1000:1005]).float()
        return {"x": x, "y": torch.from_numpy(cols["z"]).float()[:, None]}

    return StreamBatches(data, batch_size, transform, columns=("z", "flux"), seed=5, shuffle_buffer=64)


def test_streamed_training_resumes_exactly(tiny_sim, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-2, checkpoint_every=2, patience=0)
    src = _stream_source(tiny_sim)
    assert all(src.n_batches(e) == sum(src.rows_per_rank(e)) // 32 for e in range(3))
    ref = _model()
    Trainer(ref, _loss, cfg, tmp_path / "a").fit(_stream_source(tiny_sim))
    calls = {"n": 0}

    def flaky(model, batch):
        calls["n"] += 1
        if calls["n"] == 14:
            raise Boom
        return _loss(model, batch)

    with pytest.raises(Boom):
        Trainer(_model(), flaky, cfg, tmp_path / "b").fit(_stream_source(tiny_sim))
    resumed = _model(seed=9)
    Trainer(resumed, _loss, cfg, tmp_path / "b").fit(_stream_source(tiny_sim), resume=True)
    for p, q in zip(ref.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_stream_ranks_read_disjoint_shards(tmp_path):
    from speculum.io import ShardStream
    from speculum.pipeline import simulate_dataset
    from speculum.sim import SimConfig

    data = simulate_dataset(tmp_path, 2048, SimConfig(), seed=1, shard_size=512)
    stream = ShardStream(data, split="train", seed=2)
    for epoch in range(3):
        stream.set_epoch(epoch)
        parts = [set(stream.assigned(rank=r, world=2)) for r in range(2)]
        assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == 4


def test_torchrun_streamed_training(tmp_path):
    from speculum.pipeline import simulate_dataset
    from speculum.sim import SimConfig

    data = simulate_dataset(tmp_path / "sim", 2048, SimConfig(), seed=3, shard_size=512)  # 4 shards, 2 per rank
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29534",
        "-m", "speculum", "train", str(data), "--out", str(tmp_path / "run"), "--stream",
        "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--shuffle-buffer", "64",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, timeout=300)
    hist = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["state"]["history"]
    assert len(hist) == 1 and hist[0]["step"] >= 1 and torch.isfinite(torch.tensor(hist[0]["val_loss"]))
