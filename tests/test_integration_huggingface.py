"""tdlab probes inside the Hugging Face `Trainer`: on a 2-layer GPT-2 built from a config (nothing downloaded) the
callback's rows equal the same probes called in a hand-written loop at the same steps (same initialisation, same
batches, same SGD with momentum), to float32 rounding; the run directory is a tdlab run that `tdlab.store`,
`tdlab show` and `tdlab query` read; bad probe data is refused before anything is written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments, default_data_collator
from transformers.utils import logging as hf_logging
from typer.testing import CliRunner

from tdlab.cli import app
from tdlab.integrations.huggingface import ProbeCallback
from tdlab.probes import GradientNorm, LossProbe, ProbeSet, Sharpness, UpdateNorm
from tdlab.store import Run, Store

STEPS, BATCH, LR, MOMENTUM = 4, 8, 0.05, 0.9
runner = CliRunner()
hf_logging.set_verbosity_error()


def gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    model = GPT2LMHeadModel(config)
    # GPT-2's class name does not tell the Trainer that its loss shifts the labels (loss_type None), so the Trainer
    # would count T instead of T - 1 tokens per sequence and scale every step by (T - 1) / T. Naming the loss
    # type makes the Trainer's step loss the model's mean token loss, the one the hand-written loop minimises.
    model.loss_type = "ForCausalLM"
    return model


def examples(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    tokens = torch.randint(0, 32, (n, 8), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": t, "attention_mask": torch.ones_like(t), "labels": t.clone()} for t in tokens]


def probes():
    # Few metric names: `tdlab show` draws one panel per name, and every per-tensor probe adds 28 of them.
    return [LossProbe(every=2), GradientNorm(every=2), Sharpness(every=4, max_iter=8), UpdateNorm(every=2)]


def arguments(out, steps: int = STEPS) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        learning_rate=LR,
        optim="sgd",
        optim_args=f"momentum={MOMENTUM}",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,  # no clipping
        train_sampling_strategy="sequential",  # the hand-written loop takes the batches in the same order
        seed=0,
        use_cpu=True,
        report_to=[],
        logging_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One `Trainer.train` with the callback (probe data: the train dataset, and a test split)."""
    out = tmp_path_factory.mktemp("runs")
    callback = ProbeCallback(probes(), test=examples(8, seed=1), out=out, run_id="gpt2", config={"sweep": {"lr": LR}})
    Trainer(model=gpt2(), args=arguments(out), train_dataset=examples(16, seed=0), callbacks=[callback]).train()
    return out, callback


def test_probe_rows_equal_a_hand_written_loop(trained):
    _, callback = trained
    model = gpt2()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    batches = [(b, b["labels"]) for b in DataLoader(examples(16, seed=0), BATCH, collate_fn=default_data_collator)]
    test = [(b, b["labels"]) for b in DataLoader(examples(8, seed=1), BATCH, collate_fn=default_data_collator)]
    hand = ProbeSet(probes(), model, lambda outputs, _: outputs.loss, train=batches, test=test, task="regression")
    hand.measure(0)
    for step in range(1, STEPS + 1):
        inputs, _ = batches[(step - 1) % len(batches)]
        model.train()
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        with hand.step(step, optimizer=optimizer):
            optimizer.step()

    rows = callback.run.metrics()
    probed = rows[rows["name"] != "lr"].reset_index(drop=True)
    expected = hand.to_frame().sort_values(["step", "name"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(probed[["step", "name"]], expected[["step", "name"]], check_dtype=False)
    np.testing.assert_allclose(probed["value"].to_numpy(), expected["value"].to_numpy(), rtol=1e-5, atol=0)
    steps = {name: sorted(set(frame["step"])) for name, frame in probed.groupby("name")}
    assert steps["sharpness"] == [0, 4] and steps["train/loss"] == [0, 2, 4] and steps["test/loss"] == [0, 2, 4]
    assert steps["grad/norm"] == [0, 2, 4] and steps["update/norm"] == [2, 4]
    assert "train/accuracy" not in steps  # no accuracy: how predictions meet labels depends on the head
    assert callback.run.metrics_wide()["lr"].dropna().tolist() == [LR] * STEPS
    # the loss did go down, and the probes' loss is the model's own mean token loss
    wide = callback.run.metrics_wide()
    assert wide["train/loss"].dropna().is_monotonic_decreasing


def test_the_run_is_a_tdlab_run_that_store_show_and_query_read(trained):
    out, callback = trained
    run = Run.open(out / "gpt2")
    assert run.status == "done" and run.meta["kind"] == "train" and run.meta["seed"] == 0
    config = run.config
    assert config["integration"] == "huggingface" and config["model"] == {
        "name": "GPT2LMHeadModel",
        "model_type": "gpt2",
    }
    assert config["optimizer"]["name"] == "SGD" and config["optimizer"]["lr"] == LR
    assert config["optimizer"]["momentum"] == MOMENTUM and config["optimizer"]["schedule"] == "constant"
    assert config["max_steps"] == STEPS and config["batch_size"] == BATCH and config["sweep"] == {"lr": LR}

    shown = runner.invoke(app, ["show", "gpt2", "--out", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "status: done" in shown.output and "sharpness" in shown.output and "test/loss" in shown.output
    sql = "SELECT step FROM metrics WHERE name = 'sharpness' AND integration = 'huggingface' ORDER BY step"
    queried = runner.invoke(app, ["query", sql, "--out", str(out)])
    assert queried.exit_code == 0, queried.output
    assert Store(out).query(sql)["step"].tolist() == [0, 4]


def test_bad_probe_data_fails_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="batch_size: expected a positive integer or None, got 0"):
        ProbeCallback(["loss"], batch_size=0, out=tmp_path)
    unlabelled = [{k: v for k, v in e.items() if k != "labels"} for e in examples(8, seed=2)]
    callback = ProbeCallback(["loss"], data=unlabelled, out=tmp_path / "runs")
    trainer = Trainer(
        model=gpt2(), args=arguments(tmp_path, steps=1), train_dataset=examples(8, seed=0), callbacks=[callback]
    )
    with pytest.raises(ValueError, match="data: expected collated batches holding 'labels'"):
        trainer.train()
    assert not (tmp_path / "runs").exists()
