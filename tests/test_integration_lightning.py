"""tdlab probes inside Lightning's `Trainer.fit`: the callback's rows equal the same probes called in a hand-written
loop at the same steps (same initialisation, same batches, same optimiser), bit for bit; the run directory is a
tdlab run that `tdlab.store`, `tdlab show` and `tdlab query` read; bad input and failures leave the right trace."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

from tdlab.cli import app
from tdlab.integrations.lightning import ProbeCallback
from tdlab.probes import GradientNorm, LossProbe, ParameterNorm, ProbeSet, Sharpness, UpdateNorm
from tdlab.store import Run, Store

STEPS = 7  # 64 examples in batches of 16: the second epoch's reshuffle is crossed
LR, MOMENTUM = 0.2, 0.9
runner = CliRunner()


class MLP(pl.LightningModule):
    """A small classifier that keeps a copy of every batch it trains on (the hand-written loop replays them)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 3))
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.fail_at: int | None = None

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.global_step == self.fail_at:
            raise RuntimeError("boom")
        self.seen.append((x.clone(), y.clone()))
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM)


def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 4, generator=g)
    return TensorDataset(X, (X[:, 0] > 0).long() + (X[:, 1] > 0).long())


def probes():
    return [
        LossProbe(every=2),
        GradientNorm(every=2),
        Sharpness(every=3, k=2),
        UpdateNorm(every=2),
        ParameterNorm(every=3),
    ]


def trainer(callback: ProbeCallback, steps: int = STEPS) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
    )


def shuffled_loader() -> DataLoader:
    return DataLoader(dataset(), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One `Trainer.fit` with the callback (probe data: the trainer's reshuffling loader, put in a fixed order)."""
    out = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    module = MLP()
    callback = ProbeCallback(probes(), nn.CrossEntropyLoss(), out=out, run_id="mlp", config={"sweep": {"width": 16}})
    trainer(callback).fit(module, shuffled_loader())
    return out, module, callback


def test_probe_rows_equal_a_hand_written_loop_bit_for_bit(fitted):
    _, module, callback = fitted
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    hand = ProbeSet(probes(), model, nn.CrossEntropyLoss(), train=DataLoader(dataset(), batch_size=16))
    hand.measure(0)
    assert len(module.seen) == STEPS
    batch_losses = []
    for step, (x, y) in enumerate(module.seen, start=1):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        batch_losses.append(float(loss.detach()))
        with hand.step(step, batch=(x, y), optimizer=optimizer):
            optimizer.step()

    rows = callback.run.metrics()
    probed = rows[~rows["name"].isin(["lr", "train/batch_loss"])].reset_index(drop=True)
    expected = hand.to_frame().sort_values(["step", "name"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(probed[["step", "name"]], expected[["step", "name"]], check_dtype=False)
    np.testing.assert_array_equal(probed["value"].to_numpy(), expected["value"].to_numpy())
    # every probe measured at its own steps, step 0 (the initial state) included except for the update norm
    steps = {name: sorted(set(frame["step"])) for name, frame in probed.groupby("name")}
    assert steps["sharpness"] == [0, 3, 6] and steps["train/loss"] == [0, 2, 4, 6]
    assert steps["grad/norm"] == [0, 2, 4, 6] and steps["update/norm"] == [2, 4, 6] and steps["param/norm"] == [0, 3, 6]
    # the loop's own rows: the batch loss training_step returned and the learning rate of each step
    wide = callback.run.metrics_wide()
    np.testing.assert_array_equal(wide["train/batch_loss"].dropna().to_numpy(), batch_losses)
    assert wide["lr"].dropna().tolist() == [LR] * STEPS
    # measuring did not move the trajectory: the trained module is the hand-trained one
    for trained, replayed in zip(module.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(trained, replayed, rtol=0, atol=0)


def test_the_run_is_a_tdlab_run_that_store_show_and_query_read(fitted):
    out, _, callback = fitted
    run = Run.open(out / "mlp")
    assert run.status == "done" and run.meta["kind"] == "train"
    config = run.config
    assert config["integration"] == "lightning" and config["model"] == {"name": "MLP", "width": 16}
    assert config["optimizer"]["name"] == "SGD" and config["optimizer"]["lr"] == LR
    assert config["optimizer"]["momentum"] == MOMENTUM and config["max_steps"] == STEPS
    assert config["sweep"] == {"width": 16} and {"name": "sharpness", "every": 3} in config["probes"]
    assert Store(out).runs()["id"].tolist() == ["mlp"]

    shown = runner.invoke(app, ["show", "mlp", "--out", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "status: done" in shown.output and "sharpness" in shown.output and "train/batch_loss" in shown.output
    assert (out / "mlp" / "figures" / "metrics.png").is_file()

    sql = "SELECT count(*) AS n FROM metrics WHERE name = 'sharpness' AND \"optimizer.lr\" = 0.2"
    queried = runner.invoke(app, ["query", sql, "--out", str(out)])
    assert queried.exit_code == 0, queried.output
    assert Store(out).query(sql)["n"].tolist() == [3]


def test_probe_names_given_data_and_a_failure(tmp_path):
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    torch.manual_seed(0)
    module = MLP()
    module.fail_at = 3
    callback = ProbeCallback(["loss", "gradient-norm"], nn.CrossEntropyLoss(), data=(X, y), every=2, out=tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        trainer(callback).fit(module, shuffled_loader())
    run = Run.open(callback.run.path)
    assert run.status == "failed" and run.meta["error"] == "RuntimeError: boom"
    # probes built from names measured on the given data, at steps 0 and 2 before the failure at step 4
    rows = run.metrics()
    assert sorted(set(rows.query("name == 'train/loss'").step)) == [0, 2]
    assert run.config["probes"] == [{"name": "loss", "every": 2}, {"name": "gradient-norm", "every": 2}]


def test_bad_input_fails_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="probe: expected one of .*'sharpness'.*got 'wobble'"):
        ProbeCallback(["wobble"], nn.CrossEntropyLoss(), out=tmp_path)
    with pytest.raises(TypeError, match="loss_fn: expected a callable"):
        ProbeCallback(["loss"], "cross-entropy", out=tmp_path)
    # probe data that is not (inputs, targets) batches: refused when training starts, no run directory
    callback = ProbeCallback(["loss"], nn.CrossEntropyLoss(), data=[{"x": torch.zeros(2, 4)}], out=tmp_path / "runs")
    with pytest.raises(TypeError, match="train: expected batches of \\(inputs, targets\\)"):
        trainer(callback, steps=1).fit(MLP(), shuffled_loader())
    assert not (tmp_path / "runs").exists()


class TwoStepsPerBatch(pl.LightningModule):
    """Manual optimisation with two updates per batch; keeps the parameters after every update."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.net = nn.Linear(4, 3)
        self.after: list[torch.Tensor] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        optimizer = self.optimizers()
        for _ in range(2):
            optimizer.zero_grad()
            self.manual_backward(nn.functional.cross_entropy(self(x), y))
            optimizer.step()
            self.after.append(torch.cat([p.detach().flatten() for p in self.parameters()]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


def test_two_updates_in_one_batch_are_two_measured_steps(tmp_path):
    torch.manual_seed(0)
    module = TwoStepsPerBatch()
    before = torch.cat([p.detach().flatten() for p in module.parameters()])
    callback = ProbeCallback([UpdateNorm(), ParameterNorm()], nn.CrossEntropyLoss(), out=tmp_path)
    trainer(callback, steps=4).fit(module, shuffled_loader())
    wide = callback.run.metrics_wide()
    assert wide.index.tolist() == [0, 1, 2, 3, 4] and len(module.after) == 4
    previous = [before, *module.after[:-1]]
    for step, (now, then) in enumerate(zip(module.after, previous, strict=True), start=1):
        assert wide.loc[step, "param/norm"] == pytest.approx(float(now.norm()), rel=1e-6)
        assert wide.loc[step, "update/norm"] == pytest.approx(float((now - then).norm()), rel=1e-6)
