"""The trainer: exact resume (also after kill -9), DDP equivalence, early stopping, checkpoints."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
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
    state = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")["state"]
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
    bad = tmp_path / "checkpoint.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint.safetensors"):
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
    from speculum.autoencode import simulate_dataset
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
    ckpt = run / "checkpoint.safetensors"
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
    assert all(src.n_batches(e) == -(-sum(src.rows_per_rank(e)) // 32) for e in range(3))  # ceil: no row left out
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
    from speculum.autoencode import simulate_dataset
    from speculum.io import ShardStream
    from speculum.sim import SimConfig

    data = simulate_dataset(tmp_path, 2048, SimConfig(), seed=1, shard_size=512)
    stream = ShardStream(data, split="train", seed=2)
    for epoch in range(3):
        stream.set_epoch(epoch)
        parts = [set(stream.assigned(rank=r, world=2)) for r in range(2)]
        assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == 4


def test_torchrun_streamed_training(tmp_path):
    from speculum.autoencode import simulate_dataset
    from speculum.sim import SimConfig

    data = simulate_dataset(tmp_path / "sim", 2048, SimConfig(), seed=3, shard_size=512)  # 4 shards, 2 per rank
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29534",
        "-m", "speculum", "train", str(data), "--out", str(tmp_path / "run"), "--stream",
        "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--shuffle-buffer", "64",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, timeout=300)
    hist = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")["state"]["history"]
    assert len(hist) == 1 and hist[0]["step"] >= 1 and torch.isfinite(torch.tensor(hist[0]["val_loss"]))


# ---------------------------------------------------------------- DDP (2 gloo processes) and run identity
def _sgd(params):
    return torch.optim.SGD(params, lr=0.05)


def _f64_data(n):
    return {k: v.double() for k, v in _data(n).items()}


def _ddp_worker(rank: int, world: int, rdv: str, out: str) -> None:
    """One rank of the float64 SGD runs compared with a single process (item by item below)."""
    import datetime

    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=rdv, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    try:
        for name, n in (("even", 40), ("short_last", 21)):  # 21 % 10 = 1 < 2 ranks
            sizes = []

            def loss(model, batch, sizes=sizes):
                sizes.append(len(batch["x"]))
                return _loss(model, batch)

            model = _model().double()
            cfg = TrainConfig(epochs=2, batch_size=10, lr=0.05, patience=0, precision="fp32")
            Trainer(model, loss, cfg, f"{out}/{name}", optimizer=_sgd).fit(_f64_data(n))
            if rank == 0:
                torch.save({"state": model.state_dict(), "sizes": sizes}, f"{out}/{name}.pt")
            torch.save({"sizes": sizes}, f"{out}/{name}.rank{rank}.pt")
    finally:
        from speculum._runtime import shutdown_distributed

        shutdown_distributed()


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:  # a free port for the TCP rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, f"tcp://127.0.0.1:{port}", str(out)), nprocs=2, join=True)
    return out


def _single_process_delta(n: int, tmp_path) -> dict[str, torch.Tensor]:
    """Weights change of the same run in one process, fed the same global batches."""
    from speculum.train import InMemoryBatches

    model = _model().double()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=2, batch_size=10, lr=0.05, patience=0, precision="fp32")
    source = InMemoryBatches(_f64_data(n), cfg.batch_size, cfg.seed, min_last=2, rank=0, world=1)
    Trainer(model, _loss, cfg, tmp_path, optimizer=_sgd).fit(source)
    return {k: v - start[k] for k, v in model.state_dict().items()}


def _assert_same_delta(path, ref: dict[str, torch.Tensor]) -> None:
    start = _model().double().state_dict()
    got = torch.load(path, weights_only=True)["state"]
    for k, d in ref.items():
        assert d.abs().max() > 1e-3, "the run must move the weights for the comparison to mean anything"
        torch.testing.assert_close(got[k] - start[k], d, rtol=1e-10, atol=1e-13)


def test_ddp_gradient_equals_single_process_float64(ddp_runs, tmp_path):
    """2 gloo ranks vs one process, SGD in float64: the weight updates agree to 1e-10.

    SGD is linear in the gradient (Adam is not: it hides any constant gradient scale), so a
    wrong loss scale under DDP (e.g. a factor 2) changes every update by that factor.
    """
    _assert_same_delta(ddp_runs / "even.pt", _single_process_delta(40, tmp_path))


def test_ddp_short_last_batch_gives_every_rank_rows(ddp_runs, tmp_path):
    """21 rows, batches of 10, 2 ranks: the 1-row final batch is merged into the previous one."""
    for rank in range(2):
        sizes = torch.load(ddp_runs / f"short_last.rank{rank}.pt", weights_only=True)["sizes"]
        # per epoch: 2 global batches of 10 and 11 rows -> local 5, 5 then 5|6 (rank 0 takes rows 0::2)
        assert sizes == ([5, 6] if rank == 0 else [5, 5]) * 2
    _assert_same_delta(ddp_runs / "short_last.pt", _single_process_delta(21, tmp_path))


def test_in_memory_batches_fold_short_final_batch():
    from speculum.train import InMemoryBatches

    data = {"x": torch.arange(23.0)}
    for world, expect in ((1, [10, 10, 3]), (2, [10, 10, 3]), (4, [10, 13])):
        per_rank = [InMemoryBatches(data, 10, 0, rank=r, world=world) for r in range(world)]
        assert per_rank[0].n_batches(0) == len(expect)
        batches = [[b for b, _ in src.batches(0)] for src in per_rank]
        assert [g for _, g in per_rank[0].batches(0)] == expect
        rows = torch.cat([b["x"] for rank_batches in batches for b in rank_batches])
        assert sorted(rows.tolist()) == list(range(23))  # every row once per epoch
        assert all(len(b["x"]) >= 1 for rank_batches in batches for b in rank_batches)
    with pytest.raises(ValueError, match="batch_size: 2 is smaller than the 3 DDP ranks"):
        InMemoryBatches(data, 2, 0, rank=0, world=3)


IDENTITY = {"data_manifest_sha256": "ab12", "limit": 192, "stream": False, "shuffle_buffer": 4096}


def test_resume_refuses_a_different_run_identity(tmp_path, monkeypatch):
    import speculum.train.trainer as trainer_module

    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-3, patience=0)
    with pytest.raises(Boom):
        calls = {"n": 0}

        def stop_in_epoch_2(model, batch):
            calls["n"] += 1
            if calls["n"] == 5:
                raise Boom
            return _loss(model, batch)

        Trainer(_model(), stop_in_epoch_2, cfg, tmp_path, identity=IDENTITY).fit(_data())
    source = {"batches_source": "InMemoryBatches", "batches_rows": 96, "batches_batch_size": 32, "batches_seed": 0}
    assert load_checkpoint(tmp_path / "checkpoint.safetensors")["identity"] == {**IDENTITY, "world_size": 1, **source}
    with pytest.raises(ValueError, match="batches_rows was 96 in the checkpoint but is 64"):  # other training rows
        Trainer(_model(), _loss, cfg, tmp_path, identity=IDENTITY).fit(_data(64), resume=True)
    for key, new in (("limit", None), ("stream", True), ("shuffle_buffer", 64), ("data_manifest_sha256", "cd34")):
        changed = {**IDENTITY, key: new}
        with pytest.raises(ValueError, match=f"{key} was {IDENTITY[key]!r} in the checkpoint but is {new!r}"):
            Trainer(_model(), _loss, cfg, tmp_path, identity=changed).fit(_data(), resume=True)
    without_limit = {k: v for k, v in IDENTITY.items() if k != "limit"}
    with pytest.raises(ValueError, match="limit was 192 in the checkpoint but is '<not given>'"):
        Trainer(_model(), _loss, cfg, tmp_path, identity=without_limit).fit(_data(), resume=True)
    monkeypatch.setattr(trainer_module, "rank_world", lambda: (0, 2))
    with pytest.raises(ValueError, match="world_size was 1 in the checkpoint but is 2"):
        Trainer(_model(), _loss, cfg, tmp_path, identity=IDENTITY).fit(_data(), resume=True)
    monkeypatch.undo()
    hist = Trainer(_model(), _loss, cfg, tmp_path, identity=IDENTITY).fit(_data(), resume=True)
    assert len(hist) == 2


# ---------------------------------------------------------------- streamed batches: coverage and mixing
@pytest.fixture(scope="module")
def five_shards(tmp_path_factory):
    from speculum.autoencode import simulate_dataset
    from speculum.sim import SimConfig

    return simulate_dataset(tmp_path_factory.mktemp("five"), 2300, SimConfig(), seed=11, shard_size=512)


def _train_ids_by_shard(root) -> dict[str, int]:
    import pyarrow.parquet as pq

    from speculum.io import SpectraSet

    data = SpectraSet.open(root)
    out = {}
    for i, entry in enumerate(data.manifest["shards"]):
        table = pq.read_table(data.root / entry["path"], columns=["object_id", "split"]).to_pydict()
        out.update({o: i for o, s in zip(table["object_id"], table["split"], strict=True) if s == "train"})
    return out


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_stream_uses_every_row_once_and_mixes_shards(five_shards, world):
    """5 shards on 1-4 ranks: every train row once per epoch, same step count on every rank,
    the trainer told each step's true global row count, and batches drawn from several shards."""
    from speculum.train import StreamBatches

    shard_of = _train_ids_by_shard(five_shards)
    assert len(set(shard_of.values())) == 5

    def ids(cols):
        return {"id": [str(o) for o in cols["object_id"]]}

    for epoch in range(2):
        ranks = [
            StreamBatches(five_shards, 64, ids, columns=("object_id",), seed=3, shuffle_buffer=64, rank=r, world=world)
            for r in range(world)
        ]
        n = {src.n_batches(epoch) for src in ranks}
        assert n == {-(-len(shard_of) // 64)}  # ceil(total / batch_size) on every rank
        per_rank = [list(src.batches(epoch)) for src in ranks]
        assert {len(p) for p in per_rank} == n
        seen, distinct = [], []
        for step in zip(*per_rank, strict=True):
            rows = [i for local, _ in step for i in local["id"]]
            assert {g for _, g in step} == {len(rows)}  # true global row count, the same on every rank
            assert abs(len(rows) - 64) <= world
            seen += rows
            distinct.append(len({shard_of[i] for i in rows}))
        assert sorted(seen) == sorted(shard_of)  # every row exactly once
        # mixing: with one shard at a time and a 64-row buffer, batches hold 1.2 shards on average
        assert np.mean(distinct) >= 3.0, distinct


def test_stream_empty_local_batches_keep_row_shapes(five_shards):
    """Batches of 4 on 4 ranks: ranks holding few rows sit some steps out with (0, L) columns."""
    from speculum.train import StreamBatches

    def cols(c):
        return {"flux": torch.from_numpy(c["flux"]), "id": list(c["object_id"])}

    ranks = [
        StreamBatches(five_shards, 4, cols, columns=("object_id", "flux"), shuffle_buffer=16, rank=r, world=4)
        for r in range(4)
    ]
    per_rank = [list(src.batches(0)) for src in ranks]
    local = [b for p in per_rank for b, _ in p]
    empty = [b for b in local if len(b["id"]) == 0]
    assert empty and all(b["flux"].shape == (0, 3921) and b["flux"].dtype == torch.float32 for b in empty)
    assert sum(len(b["id"]) for b in local) == len(_train_ids_by_shard(five_shards))
    assert all(g >= 1 for p in per_rank for _, g in p)


# ---------------------------------------------------------------- general trainer: two optimisers, two phases
import torch.nn.functional as F  # noqa: E402

from speculum.train import CheckpointError, DrawBatches, Method, Phase  # noqa: E402

MU, SIGMA = 1.5, 0.5


class GaussianGAN(Method):
    """A generator ``x = a z + b`` against a logistic discriminator on ``(x, x^2)``: the target is N(MU, SIGMA)."""

    def __init__(self, sleep: float = 0.0, fail_at: int | None = None, init: float = 0.0) -> None:
        self.gen, self.disc = torch.nn.Linear(1, 1), torch.nn.Linear(2, 1)
        with torch.no_grad():  # ``init`` != 0: other starting weights (a resumed run must not depend on them)
            self.gen.weight.fill_(1.0 + init), self.gen.bias.fill_(init), self.disc.weight.fill_(init)
            self.disc.bias.zero_()
        self.sleep, self.fail_at, self.calls = sleep, fail_at, 0

    def modules(self):
        return {"gen": self.gen, "disc": self.disc}

    def configure(self, config, steps):
        disc = torch.optim.Adam(self.disc.parameters(), lr=0.02, betas=(0.5, 0.9), weight_decay=0.5)
        return {"disc": disc, "gen": torch.optim.Adam(self.gen.parameters(), lr=0.02, betas=(0.5, 0.9))}, {}

    @staticmethod
    def _logit(disc, x):
        return disc(torch.stack([x, x * x], 1)).squeeze(1)

    def step(self, ctx, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise Boom
        time.sleep(self.sleep)
        gen, disc = ctx.nets["gen"], ctx.nets["disc"]
        fake = gen(batch["noise"][:, None]).squeeze(1)
        d_loss = F.softplus(-self._logit(disc, batch["real"])) + F.softplus(self._logit(disc, fake.detach()))
        ctx.minimize("disc", d_loss)
        g_loss = F.softplus(-self._logit(disc, fake))
        ctx.minimize("gen", g_loss)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


def _draw_gaussians(gen, n):
    return {"real": MU + SIGMA * torch.randn(n, generator=gen), "noise": torch.randn(n, generator=gen)}


def _ls_data(n=256):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 1.5, -1.0], dtype=torch.float64) + 0.5
    return {"x": x, "y": y}  # noiseless: the least-squares fit of phase 2 is exact


class TwoPhaseFit(Method):
    """Least squares ``y ~ A(x[:, :3]) + B(x[:, 3:])``: phase 1 fits A alone (Adam), phase 2 A + B (SGD)."""

    def __init__(self, sleep: float = 0.0, fail_at: int | None = None, init: float = 0.0) -> None:
        torch.manual_seed(0 if init == 0 else 1)
        self.a = torch.nn.Linear(3, 1).double()
        self.b = torch.nn.Linear(2, 1, bias=False).double()
        torch.nn.init.constant_(self.b.weight, init)
        self.sleep, self.fail_at, self.calls = sleep, fail_at, 0

    def modules(self):
        return {"a": self.a, "b": self.b}

    def phases(self, config):
        return [Phase("a", 8, ("a",)), Phase("a+b", 10, ("ab",))]

    def configure(self, config, steps):
        opt_a = torch.optim.Adam(self.a.parameters(), lr=0.3)
        opt_ab = torch.optim.SGD([*self.a.parameters(), *self.b.parameters()], lr=0.1)
        sched = {"a": torch.optim.lr_scheduler.OneCycleLR(opt_a, max_lr=0.3, total_steps=steps["a"])}
        return {"a": opt_a, "ab": opt_ab}, sched

    def predict(self, a, b, x):
        return (a(x[:, :3]) + b(x[:, 3:])).squeeze(1)

    def step(self, ctx, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise Boom
        time.sleep(self.sleep)
        per = (self.predict(ctx.nets["a"], ctx.nets["b"], batch["x"]) - batch["y"]) ** 2
        ctx.minimize(ctx.phase.optimizers[0], per)
        return {"loss": per.detach()}

    @torch.no_grad()
    def validate(self, ctx, val):
        mse = ((self.predict(self.a, self.b, val["x"]) - val["y"]) ** 2).mean()
        return {"val_loss": float(mse), "val_b_norm": float(self.b.weight.norm())}


TOY_STEPS = {"gan": 8 * 40, "two_phase": 18 * 8}  # epochs x batches of each toy
TOY_CFG = TrainConfig(epochs=8, batch_size=128, lr=0.02, checkpoint_every=7, patience=0, precision="fp32")
LS_CFG = TrainConfig(epochs=18, batch_size=32, lr=0.1, checkpoint_every=5, patience=0, precision="fp32")


def _toy(kind: str, run_dir, checkpoint_every: int | None = None, resume=False, **kw):
    """Train toy ``kind`` (``gan`` or ``two_phase``) in ``run_dir``; returns the method (also run by subprocesses)."""
    from dataclasses import replace

    if kind == "gan":
        method, cfg = GaussianGAN(**kw), TOY_CFG
        train, val = DrawBatches(_draw_gaussians, 128, 40, seed=1, rank=0, world=1), None
    else:
        method, cfg = TwoPhaseFit(**kw), LS_CFG
        train = val = _ls_data()
    if checkpoint_every is not None:
        cfg = replace(cfg, checkpoint_every=checkpoint_every)
    method.history = Trainer(method, config=cfg, run_dir=run_dir).fit(train, val, resume=resume)
    return method


def _same_weights(a: Method, b: Method) -> None:
    for name, module in a.modules().items():
        for k, v in module.state_dict().items():
            torch.testing.assert_close(v, b.modules()[name].state_dict()[k], rtol=0, atol=0)


@pytest.fixture(scope="module")
def toy_refs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toys")
    return {kind: _toy(kind, tmp / kind) for kind in ("gan", "two_phase")}


def _kill_9_then_resume(kind: str, tmp_path, after_step: int, checkpoint_every: int) -> Method:
    """Run toy ``kind`` in a subprocess, SIGKILL it once a checkpoint at step >= ``after_step`` exists, resume here."""
    run = tmp_path / "killed"
    tests = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {tests!r}); import test_trainer as t; "
        f"t._toy({kind!r}, {str(run)!r}, checkpoint_every={checkpoint_every}, sleep=0.03)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    ckpt, deadline = run / "checkpoint.safetensors", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and load_checkpoint(ckpt, tensors=False)["state"]["step"] >= after_step:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(ckpt, tensors=False)["state"]
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill"
    assert after_step <= state["step"] < TOY_STEPS[kind], "the kill should land mid-run"
    resumed = _toy(kind, run, checkpoint_every=checkpoint_every, resume=True, init=0.7)  # other start weights
    assert resumed.calls == TOY_STEPS[kind] - state["step"]  # only the steps after the checkpoint ran here
    return resumed


def test_two_optimiser_gan_learns_the_target_gaussian(toy_refs):
    """Known answer: the generator's N(b, |a|) approaches the target N(1.5, 0.5).

    Measured (draw seeds 1-5): mean 1.47-1.51, standard deviation 0.43-0.51.
    """
    gen = toy_refs["gan"].gen
    assert abs(gen.bias.item() - MU) < 0.1
    assert abs(abs(gen.weight.item()) - SIGMA) < 0.15
    hist = toy_refs["gan"].history
    assert len(hist) == 8 and {"train_d_loss", "train_g_loss", "lr_gen", "lr_disc"} <= set(hist[0])


def test_two_optimiser_resumes_exactly_after_an_interruption(toy_refs, tmp_path):
    with pytest.raises(Boom):
        _toy("gan", tmp_path, fail_at=150)  # mid-epoch 4, between checkpoints (every 7 steps)
    assert load_checkpoint(tmp_path / "checkpoint.safetensors")["state"]["step"] == 147
    resumed = _toy("gan", tmp_path, resume=True, init=0.7)  # other start weights: all must come from the checkpoint
    assert resumed.calls == TOY_STEPS["gan"] - 147
    _same_weights(toy_refs["gan"], resumed)
    assert [h["train_g_loss"] for h in resumed.history] == [h["train_g_loss"] for h in toy_refs["gan"].history]


def test_two_optimiser_kill_9_then_resume_equals_uninterrupted(toy_refs, tmp_path):
    resumed = _kill_9_then_resume("gan", tmp_path, after_step=20, checkpoint_every=1)
    _same_weights(toy_refs["gan"], resumed)


def test_two_phase_least_squares_reaches_the_analytic_solutions(toy_refs):
    """Known answers: phase 1 approaches the least-squares fit of A alone (B frozen at 0; measured MSE 2 %
    above the optimum after 8 minibatch epochs of Adam), phase 2 reaches the exact full fit of the noiseless data."""
    data, fit = _ls_data(), toy_refs["two_phase"]
    ones = torch.ones(len(data["y"]), 1, dtype=torch.float64)
    for cols, last_epoch, rel in ((slice(0, 3), 8, 3e-2), (slice(0, 5), 18, None)):
        design = torch.cat([data["x"][:, cols], ones], 1)
        coef = torch.linalg.lstsq(design, data["y"][:, None]).solution
        best_mse = float(((design @ coef).squeeze(1) - data["y"]).pow(2).mean())
        rec = fit.history[last_epoch - 1]
        assert rec["phase"] == ("a" if last_epoch == 8 else "a+b")
        if rel is not None:
            assert rec["val_loss"] == pytest.approx(best_mse, rel=rel)
    assert all(h["val_b_norm"] == 0 for h in fit.history[:8]) and fit.history[8]["val_b_norm"] > 0  # B: phase 2
    want = torch.cat([coef[:3, 0], coef[3:5, 0], coef[5:, 0]])
    got = torch.cat([fit.a.weight[0], fit.b.weight[0], fit.a.bias]).detach()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_two_phase_resumes_exactly_inside_phase_2(toy_refs, tmp_path):
    with pytest.raises(Boom):
        _toy("two_phase", tmp_path, fail_at=8 * 9 + 7)  # epoch 10 = phase 2's second, between checkpoints
    state = load_checkpoint(tmp_path / "checkpoint.safetensors")["state"]
    assert state["epoch"] == 9 and state["batch"] > 0
    resumed = _toy("two_phase", tmp_path, resume=True, init=0.7)  # other start weights
    assert resumed.calls == TOY_STEPS["two_phase"] - state["step"]
    _same_weights(toy_refs["two_phase"], resumed)


def test_two_phase_kill_9_then_resume_equals_uninterrupted(toy_refs, tmp_path):
    resumed = _kill_9_then_resume("two_phase", tmp_path, after_step=8 * 8 + 5, checkpoint_every=1)  # in phase 2
    _same_weights(toy_refs["two_phase"], resumed)


# ---------------------------------------------------------------- checkpoint format: nothing unpickles
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling would create the marker file


def test_pickled_checkpoint_is_refused_and_never_unpickled(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint.safetensors", "checkpoint.pt"):
        (run / name).write_bytes(pickle.dumps({"state": _Payload(str(marker))}))
        with pytest.raises(CheckpointError, match=f"{name}: a torch.save/pickle file.*never unpickles"):
            load_checkpoint(run / name)
    with pytest.raises(CheckpointError, match="never unpickles"):
        Trainer(_model(), _loss, TrainConfig(epochs=1), run).fit(_data(), resume=True)
    (run / "checkpoint.safetensors").unlink()
    torch.save({"state": {"step": 1}}, run / "checkpoint.pt")  # the format before this one
    with pytest.raises(CheckpointError, match="checkpoint.pt: the checkpoint format changed"):
        Trainer(_model(), _loss, TrainConfig(epochs=1), run).fit(_data(), resume=True)
    assert not marker.exists()


def test_checkpoint_rebuilds_optimizer_state_exactly(tmp_path):
    from speculum.train import save_checkpoint

    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    _loss(model, _data()).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c.safetensors", {"opt": opt.state_dict(), "misc": {"t": (1, 2.5), 3: None}})
    back = load_checkpoint(tmp_path / "c.safetensors")
    assert back["misc"] == {"t": (1, 2.5), 3: None}
    want = opt.state_dict()
    assert back["opt"]["param_groups"] == want["param_groups"]
    assert set(back["opt"]["state"]) == set(want["state"]) == {0, 1, 2, 3}
    for k, s in want["state"].items():
        for name, t in s.items():
            assert torch.equal(back["opt"]["state"][k][name], t) and back["opt"]["state"][k][name].dtype == t.dtype
