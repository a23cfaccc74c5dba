"""Trainer: loss goes down, schedule, bit-exact resume, run protection, fine-tuning, DDP."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.nn.functional as F
from helpers import REPO

from upocr.tasks import TAMPERED_TEXT_DETECTION, TASKS, TEXT_REMOVAL, TEXT_SEGMENTATION
from upocr.training.trainer import (
    Collate,
    ShardedBatchSampler,
    TaskStream,
    TrainConfig,
    Trainer,
    TrainingError,
    learning_rate,
    parameter_groups,
)

SIZE = 64
TINY = dict(embed_dim=8, encoder_num_heads=[1, 1, 2, 2], decoder_num_heads=[2, 2, 1, 1, 1])


class TinySet(torch.utils.data.Dataset):
    """A few fixed 64x64 items per task in the dataset item format.

    With ``augment``, items are flipped at random with the GLOBAL torch generator (as a real
    augmentation would), so reproducibility depends on the trainer seeding each item."""

    def __init__(self, task: str, n: int = 4, seed: int = 0, augment: bool = False):
        g = torch.Generator().manual_seed(seed + 17 * TASKS.index(task))
        self.task, self.augment, self.items = task, augment, []
        for i in range(n):
            image = torch.rand(3, SIZE, SIZE, generator=g)
            blocks = (torch.rand(1, 1, SIZE // 8, SIZE // 8, generator=g) > 0.6).float()
            mask = F.interpolate(blocks, size=(SIZE, SIZE))[0]
            if task == TEXT_REMOVAL:
                target = image * (1 - mask) + 0.5 * mask
                image = image * (1 - mask) + mask * torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)
            elif task == TEXT_SEGMENTATION:
                target = mask.expand(3, -1, -1).clone()
                image = image * 0.5 + 0.5 * mask
            else:
                target = torch.stack([1 - mask[0], mask[0], torch.zeros_like(mask[0])])
                image = image * 0.5 + 0.5 * mask
            self.items.append({"image": image, "target": target, "mask": mask, "task": task, "name": f"{task}-{i}"})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        item = dict(self.items[index])
        if self.augment and torch.rand(()) < 0.5:
            item = {k: (v.flip(-1) if isinstance(v, torch.Tensor) else v) for k, v in item.items()}
        return item


def tiny_config(tmp_path, name="run", **changes) -> TrainConfig:
    values = dict(
        model_overrides=TINY, datasets={t: [{"format": "memory"}] for t in TASKS}, image_size=SIZE, batch_size=2,
        steps=6, warmup_steps=2, lr=1e-3, log_every=1, save_every=0, val_every=0, progress=False,
        output_dir=str(tmp_path / name),
    )
    values.update(changes)
    return TrainConfig.from_dict(values)


def tiny_sets(n=4, augment=False, seed=0):
    return {t: TinySet(t, n=n, seed=seed, augment=augment) for t in TASKS}


def read_log(config: TrainConfig) -> list[dict]:
    with open(os.path.join(config.output_dir, "log.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------- schedule


def test_schedule_key_values():
    config = TrainConfig(steps=100, warmup_steps=10, lr=5e-4, min_lr=1e-5, lr_encoder_ratio=0.1)
    assert learning_rate(0, config) == 0.0
    assert learning_rate(5, config) == pytest.approx(2.5e-4)
    assert learning_rate(10, config) == pytest.approx(5e-4)  # end of warm-up: peak
    assert learning_rate(55, config) == pytest.approx((5e-4 + 1e-5) / 2)  # half way down
    assert learning_rate(100, config) == pytest.approx(1e-5)  # last update: min_lr
    assert learning_rate(100, config, encoder=True) == pytest.approx(1e-6)
    assert learning_rate(10, config, encoder=True) == pytest.approx(5e-5)
    no_warmup = TrainConfig(steps=4, warmup_steps=0, lr=1e-3, min_lr=0.0)
    assert [learning_rate(s, no_warmup) for s in (1, 2, 3, 4)] == pytest.approx([7.5e-4, 5e-4, 2.5e-4, 0.0])


def test_parameter_groups_exclude_norms_biases_prompts():
    from upocr.modeling.upocr import UPOCR

    model = UPOCR.from_preset("tiny", **TINY)
    config = TrainConfig(lr=5e-4, lr_encoder_ratio=0.1, weight_decay=1e-4)
    groups = {g["name"]: g for g in parameter_groups(model, config)}
    assert set(groups) == {"encoder", "encoder_no_decay", "main", "main_no_decay"}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    named = dict(model.named_parameters())
    assert sum(len(v) for v in ids.values()) == len(named)
    assert id(model.task_prompt.weight) in ids["main_no_decay"]
    logit = next(p for n, p in named.items() if n.startswith("encoder.") and n.endswith("logit_scale"))
    assert id(logit) in ids["encoder_no_decay"]
    assert groups["encoder"]["lr"] == pytest.approx(5e-5) and groups["main"]["lr"] == pytest.approx(5e-4)
    assert groups["main_no_decay"]["weight_decay"] == 0.0 and groups["main"]["weight_decay"] == 1e-4


def test_sharded_stream_covers_each_epoch_once():
    stream = TaskStream(5, seed=3, task_id=0)
    assert sorted(stream.permutation(0)) == list(range(5))
    assert list(stream.permutation(0)) != list(stream.permutation(1)) or list(stream.permutation(1)) != list(
        stream.permutation(2))
    shards = [iter(ShardedBatchSampler(stream, 2, start=1, rank=r, world_size=2)) for r in range(2)]
    first = [next(s) for s in shards]
    positions = [p for batch in first for p, _ in batch]
    assert positions == [1, 2, 3, 4]
    assert [p for p, _ in next(shards[0])] == [5, 6]


# ----------------------------------------------------------------------------------------- training


def test_training_lowers_loss_and_writes_outputs(tmp_path):
    config = tiny_config(tmp_path, steps=14, warmup_steps=2, lr=2e-3, model_overrides={**TINY, "drop_path_rate": 0.0},
                         val_datasets={t: [{"format": "memory"}] for t in TASKS}, val_every=7)
    sets = tiny_sets(n=2)
    trainer = Trainer(config, datasets=sets, val_datasets=tiny_sets(n=2))
    fixed = {t: Collate(SIZE)([sets[t][i] for i in range(2)]) for t in TASKS}

    def fixed_loss():
        trainer.model.eval()
        with torch.no_grad():
            total, _ = trainer.compute_losses(trainer.model, fixed)
        trainer.model.train()
        return float(total)

    before = fixed_loss()
    summary = trainer.train()
    after = fixed_loss()
    assert summary["finished"] and summary["step"] == 14
    assert after < 0.8 * before, (before, after)

    log = read_log(config)
    train_lines = [r for r in log if r["event"] == "train"]
    assert [r["step"] for r in train_lines] == list(range(1, 15))
    for r in train_lines:  # the logged lr is the one the update used
        assert r["lr"] == pytest.approx(learning_rate(r["step"], config), rel=1e-5)
        assert set(r["losses"]) == set(TASKS) and r["images_per_s"] > 0
    vals = [r for r in log if r["event"] == "val"]
    assert [r["step"] for r in vals] == [7, 14]
    assert {"psnr"} <= set(vals[-1]["val"][TEXT_REMOVAL]) and "fgiou" in vals[-1]["val"][TEXT_SEGMENTATION]

    model_dir = tmp_path / "run" / "model"
    card = (model_dir / "README.md").read_text()
    assert "## Training" in card and "14 of 14 steps" in card and "| text-removal | psnr |" in card
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 14 and ckpt["positions"] == {t: 28 for t in TASKS}


def _trained_state(trainer: Trainer) -> dict:
    return {
        "params": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict()["last_epoch"],
        "positions": dict(trainer.positions),
        "rng": torch.get_rng_state().clone(),
    }


def test_resume_is_bit_exact(tmp_path):
    # 5 items with batch 2: epochs end mid-batch; random flips use the global generator;
    # drop path (0.3) uses the training generator, which must be restored too.
    common = dict(steps=7, warmup_steps=3, lr=2e-3)
    straight = Trainer(tiny_config(tmp_path, "straight", **common), datasets=tiny_sets(5, augment=True))
    straight.train()
    a = _trained_state(straight)

    first = Trainer(tiny_config(tmp_path, "split", **common), datasets=tiny_sets(5, augment=True))
    summary = first.train(stop_at=3)
    assert summary["step"] == 3 and not summary["finished"]
    assert not (tmp_path / "split" / "model").exists()
    torch.manual_seed(1234)  # whatever happens in between must not matter
    resumed = Trainer(tiny_config(tmp_path, "split", **common), resume=True, datasets=tiny_sets(5, augment=True))
    assert resumed.step == 3
    resumed.train()
    b = _trained_state(resumed)

    assert a["params"].keys() == b["params"].keys()
    for key in a["params"]:
        assert torch.equal(a["params"][key], b["params"][key]), key
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for index in sa:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[index][name], sb[index][name]), (index, name)
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == [g["lr"] for g in b["optimizer"]["param_groups"]]
    assert a["scheduler"] == b["scheduler"] == 7
    assert a["positions"] == b["positions"] == {t: 14 for t in TASKS}
    assert torch.equal(a["rng"], b["rng"])
    # the resumed log has each step once
    steps = [r["step"] for r in read_log(resumed.config) if r["event"] == "train"]
    assert steps == list(range(1, 8))


def test_resume_follows_a_changed_learning_rate(tmp_path):
    """A resumed run keeps the optimiser's moments but takes lr, encoder ratio and weight decay
    from its (changed) config: the schedule continues at the new peak, not the checkpoint's."""
    first = Trainer(tiny_config(tmp_path, "run", steps=4, warmup_steps=1, lr=1e-3), datasets=tiny_sets())
    first.train(stop_at=2)
    moments = {i: s["exp_avg"].clone() for i, s in first.optimizer.state_dict()["state"].items()}
    changed = tiny_config(tmp_path, "run", steps=8, warmup_steps=1, lr=4e-3, min_lr=1e-4, lr_encoder_ratio=0.5,
                          weight_decay=0.02)
    resumed = Trainer(changed, resume=True, datasets=tiny_sets())
    assert resumed.step == 2
    restored = resumed.optimizer.state_dict()["state"]
    assert restored.keys() == moments.keys() and len(moments) > 0
    for index, value in moments.items():
        assert torch.equal(restored[index]["exp_avg"], value)
    for group in resumed.optimizer.param_groups:
        encoder = group["name"].startswith("encoder")
        peak = 4e-3 * (0.5 if encoder else 1.0)
        assert group["initial_lr"] == pytest.approx(peak)
        # the next update is the 3rd of 8: learning_rate(3) of the new config
        assert group["lr"] == pytest.approx(learning_rate(3, changed, encoder=encoder))
        assert group["weight_decay"] == (0.0 if group["name"].endswith("no_decay") else 0.02)
    resumed.train()
    lrs = [r["lr"] for r in read_log(changed) if r["event"] == "train" and r["step"] > 2]
    # the log keeps 6 significant digits
    assert lrs[0] == pytest.approx(learning_rate(3, changed), rel=1e-5) and lrs[-1] == pytest.approx(1e-4, rel=1e-5)


def test_refuses_to_clobber_existing_run(tmp_path, capsys):
    from upocr.cli import main

    config = tiny_config(tmp_path, steps=1)
    Trainer(config, datasets=tiny_sets(2)).train()
    with pytest.raises(TrainingError, match="already holds a training run"):
        Trainer(config, datasets=tiny_sets(2))
    assert main(["train", "--output-dir", config.output_dir, "--steps", "1"]) == 2
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(TrainingError, match="nothing to resume"):
        Trainer(tiny_config(tmp_path, "empty"), resume=True, datasets=tiny_sets(2))
    # --overwrite starts again (the old checkpoint is gone before the new run writes its own)
    trainer = Trainer(config, overwrite=True, datasets=tiny_sets(2))
    assert not (tmp_path / "run" / "checkpoints").exists() and trainer.step == 0


def test_finetune_from_save_pretrained_folder(tmp_path):
    from upocr.modeling.upocr import UPOCR

    source = UPOCR.from_preset("tiny", **TINY)
    with torch.no_grad():
        source.task_prompt.weight.fill_(0.25)
    source.save_pretrained(tmp_path / "pretrained")
    config = tiny_config(tmp_path, "ft", init_from=str(tmp_path / "pretrained"), preset="small",
                         model_overrides={"drop_path_rate": 0.0}, steps=2)
    trainer = Trainer(config, datasets=tiny_sets(2))
    assert trainer.model.config["embed_dim"] == 8 and trainer.model.config["drop_path_rate"] == 0.0
    for (name, p), q in zip(trainer.model.state_dict().items(), source.state_dict().values()):
        assert torch.equal(p, q), name
    assert trainer.model.training
    trainer.train()
    assert not torch.equal(trainer.model.task_prompt.weight, source.task_prompt.weight)
    reloaded = UPOCR.from_pretrained(tmp_path / "ft" / "model")
    assert torch.equal(reloaded.task_prompt.weight, trainer.model.task_prompt.weight)


def test_cli_flags_override_yaml(tmp_path):
    import argparse

    from upocr.cli.train import register, resolve_config

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("preset: tiny\nbatch_size: 4\nsteps: 50\nlr: 1.0e-4\nvgg16_weights: /x/vgg.pth\n"
                   "datasets:\n  segmentation:\n    - {format: synthetic, seed: 1}\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--config", str(cfg), "--steps", "7", "--no-amp", "--vgg16-weights", "none",
                              "--model-overrides", "{drop_path_rate: 0.1}", "--val-datasets",
                              "{removal: [{format: synthetic, split: val}]}"])
    config = resolve_config(args)
    assert config.steps == 7 and config.batch_size == 4 and config.lr == 1e-4 and config.amp is False
    assert config.vgg16_weights is None and config.model_overrides == {"drop_path_rate": 0.1}
    assert list(config.datasets) == [TEXT_SEGMENTATION] and config.datasets[TEXT_SEGMENTATION][0]["seed"] == 1
    assert config.val_datasets[TEXT_REMOVAL][0]["task"] == TEXT_REMOVAL
    with pytest.raises(TrainingError, match="unknown training option"):
        TrainConfig.from_dict({"stpes": 3})
    with pytest.raises(TrainingError, match="multiple of 32"):
        TrainConfig.from_dict({"image_size": 100})


# ----------------------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        from pathlib import Path

        root = Path(out_dir)
        common = dict(steps=3, warmup_steps=1, lr=2e-3)
        straight = Trainer(tiny_config(root, "straight", **common), datasets=tiny_sets(5, augment=True))
        straight.train()
        first = Trainer(tiny_config(root, "split", **common), datasets=tiny_sets(5, augment=True))
        first.train(stop_at=2)
        resumed = Trainer(tiny_config(root, "split", **common), resume=True, datasets=tiny_sets(5, augment=True))
        resumed.train()
        torch.save({"straight": straight.model.state_dict(), "resumed": resumed.model.state_dict(),
                    "positions": resumed.positions}, root / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_stay_in_sync(tmp_path):
    import torch.multiprocessing as mp

    import upocr.modeling.upocr  # noqa: F401  (imported once here; forked workers inherit it)

    # fork: the workers start in well under a second instead of re-importing torch and timm
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in r0["straight"]:
        assert torch.equal(r0["straight"][key], r1["straight"][key]), key
        assert torch.equal(r0["straight"][key], r0["resumed"][key]), key  # DDP resume is bit-exact too
        assert torch.equal(r1["resumed"][key], r0["resumed"][key]), key
    assert r0["positions"] == {t: 12 for t in TASKS}  # 3 steps x 2 per task x 2 processes
    ckpt = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert not (tmp_path / "split" / "rank1").exists()
    lines = [json.loads(x) for x in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["event"] == "train"] == [1, 2, 3]  # rank 0 only


def test_concat_and_per_task_forward_give_the_same_update(tmp_path):
    """Both forward modes give the same loss and gradients. The network runs in float64: in float32
    the two batch layouts round differently, and LayerNorms over small-variance tokens amplify that
    to ~1e-3 of some gradients (see test_full_resolution_is_limited_by_float32_rounding)."""
    sets = tiny_sets(2)
    grads = {}
    for mode in ("concat", "per-task"):
        config = tiny_config(tmp_path, mode, forward=mode, model_overrides={**TINY, "drop_path_rate": 0.0}, steps=1)
        trainer = Trainer(config, datasets=sets)
        assert trainer.forward_mode == mode
        model = trainer.model.double()
        forward = model.forward
        model.forward = lambda images, tasks: forward(images.double(), tasks)
        stats = trainer.train_step(trainer._next_batches())
        grads[mode] = (float(stats["loss"]), {n: p.grad.clone() for n, p in trainer.model.named_parameters()})
    assert grads["concat"][0] == pytest.approx(grads["per-task"][0], rel=1e-5)
    for name, value in grads["concat"][1].items():
        torch.testing.assert_close(value, grads["per-task"][1][name], rtol=1e-4, atol=1e-7, msg=name)
    assert any(g.abs().max() > 0 for g in grads["concat"][1].values())


def test_workers_do_not_change_the_data(tmp_path):
    # items flip at random with the global generator; the trainer seeds each item from its
    # stream position, so loading in a worker process gives the same batches
    weights = []
    # one number for every task, or a number per task (a task that renders slowly gets more)
    for index, workers in enumerate((0, 1, {"segmentation": 1, "removal": 0, "tampering": 0})):
        config = tiny_config(tmp_path, f"w{index}", num_workers=workers, steps=2)
        trainer = Trainer(config, datasets=tiny_sets(3, augment=True))
        trainer.train()
        weights.append(trainer.model.state_dict())
    assert {t: config.task_num_workers(t) for t in TASKS} == {
        "text-removal": 0, "tampered-text-detection": 0, "text-segmentation": 1}
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
        assert torch.equal(weights[0][key], weights[2][key]), key
    with pytest.raises(TrainingError, match=r"num_workers\[text-removal\] must be a whole number of at least 0"):
        TrainConfig.from_dict({"num_workers": {"removal": -1, "segmentation": 0, "tampering": 0}})


def test_example_config_loads():
    path = REPO / "configs" / "tiny-synthetic.yaml"
    config = TrainConfig.from_yaml(path)
    assert config.preset == "tiny" and config.image_size == 512 and 2 <= config.batch_size <= 4
    assert list(config.datasets) == list(TASKS) and list(config.val_datasets) == list(TASKS)
    for task in TASKS:
        train, val = config.datasets[task][0], config.val_datasets[task][0]
        assert train["format"] == val["format"] == "synthetic"
        assert val["split"] == "heldout" and val["seed"] != train["seed"]


def test_non_finite_gradient_stops_with_a_clear_error(tmp_path):
    sets = tiny_sets(2)
    sets[TEXT_SEGMENTATION].items[0]["image"][0, 0, 0] = float("nan")
    sets[TEXT_SEGMENTATION].items[1]["image"][0, 0, 0] = float("nan")
    trainer = Trainer(tiny_config(tmp_path, steps=2), datasets=sets)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingError, match="not finite at step 1"):
        trainer.train()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_foreground_weight_reaches_the_segmentation_and_tampering_losses(tmp_path):
    sets = tiny_sets(n=2)
    batches = {t: Collate(SIZE)([sets[t][i] for i in range(2)]) for t in TASKS}
    losses = {}
    for weight in (1.0, 4.0):
        config = tiny_config(tmp_path, name=f"fg{weight}", foreground_weight=weight)
        trainer = Trainer(config, datasets=sets)  # the same seed: the same initial weights
        trainer.model.eval()
        with torch.no_grad():
            _, parts = trainer.compute_losses(trainer.model, batches)
        losses[weight] = {t: float(parts[t]["loss"]) for t in TASKS}
    assert losses[4.0][TEXT_REMOVAL] == losses[1.0][TEXT_REMOVAL]  # removal has its own text weights
    for task in (TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION):
        assert losses[4.0][task] != pytest.approx(losses[1.0][task], rel=1e-3)


def test_foreground_weight_option_is_checked():
    config = TrainConfig.from_dict({"foreground_weight": {"segmentation": 5, "tampering": 2}})
    assert config.loss_options("text-segmentation") == {"foreground_weight": 5.0}
    assert config.loss_options("tampered-text-detection") == {"foreground_weight": 2.0}
    assert config.loss_options("text-removal") == {}
    assert TrainConfig.from_dict({"foreground_weight": 3}).loss_options("segmentation") == {"foreground_weight": 3.0}
    tampered = TrainConfig.from_dict({"foreground_weight": 2, "tampered_weight": 6})
    assert tampered.loss_options("tampering") == {"foreground_weight": 2.0, "tampered_weight": 6.0}
    assert tampered.loss_options("segmentation") == {"foreground_weight": 2.0}
    with pytest.raises(TrainingError, match="tampered_weight must be positive"):
        TrainConfig.from_dict({"tampered_weight": 0})
    assert TrainConfig.from_dict({}).loss_options("segmentation") == {}
    with pytest.raises(TrainingError, match="positive"):
        TrainConfig.from_dict({"foreground_weight": 0})
    with pytest.raises(TrainingError, match="text removal"):
        TrainConfig.from_dict({"foreground_weight": {"removal": 2}})
    with pytest.raises(TrainingError, match="must be a number"):
        TrainConfig.from_dict({"foreground_weight": {"segmentation": "lots"}})


def test_batch_size_per_task(tmp_path):
    import argparse

    from upocr.cli.train import register, resolve_config

    sizes = {TEXT_SEGMENTATION: 3, TAMPERED_TEXT_DETECTION: 2, TEXT_REMOVAL: 1}
    config = tiny_config(tmp_path, steps=2, batch_size={"segmentation": 3, "tampering": 2, "removal": 1})
    assert config.batch_size == sizes
    trainer = Trainer(config, datasets=tiny_sets(n=4))
    seen = {}
    original = trainer.compute_losses

    def record(model, batches):
        for task, batch in batches.items():
            seen.setdefault(task, []).append(batch["image"].shape[0])
        return original(model, batches)

    trainer.compute_losses = record
    trainer.train()
    assert seen == {t: [n, n] for t, n in sizes.items()}
    assert trainer.positions == {t: 2 * n for t, n in sizes.items()}
    assert "3 text-segmentation" in trainer.model_card_details()

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--batch-size", "{segmentation: 4, removal: 2, tampering: 1}"])
    assert resolve_config(args).task_batch_size("segmentation") == 4
    assert resolve_config(parser.parse_args(["train", "--batch-size", "5"])).batch_size == 5
    with pytest.raises(TrainingError, match="no value for text-removal"):
        TrainConfig.from_dict({"batch_size": {"segmentation": 2, "tampering": 2}})
    with pytest.raises(TrainingError, match="whole number"):
        TrainConfig.from_dict({"batch_size": 0})


def test_budget_schedule_key_values():
    from upocr.training.config import budget_lr_factor

    assert budget_lr_factor(0, 0.0, 10, 0.02) == 0.0
    assert budget_lr_factor(5, 0.0, 10, 0.02) == pytest.approx(0.5)  # warm-up counts steps
    assert budget_lr_factor(10, 0.0, 10, 0.02) == pytest.approx(1.0)
    assert budget_lr_factor(50, 0.5, 10, 0.02) == pytest.approx(0.51)  # half the budget: half way down
    assert budget_lr_factor(90, 1.0, 10, 0.02) == pytest.approx(0.02)
    assert budget_lr_factor(99, 1.7, 10, 0.02) == pytest.approx(0.02)  # past the budget: the floor


def test_a_time_budget_ends_the_run_finished_with_its_learning_rate_decayed(tmp_path):
    config = tiny_config(tmp_path, steps=100_000, warmup_steps=1, lr=1e-3, min_lr=1e-5, time_budget_s=3.0,
                         amp_dtype="bfloat16")
    trainer = Trainer(config, datasets=tiny_sets())
    summary = trainer.train()
    assert summary["finished"] and not summary["stopped"] and 1 < summary["step"] < 100_000
    assert summary["elapsed"] >= 3.0
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    rates = [record["lr"] for record in read_log(config) if record["event"] == "train"]
    assert rates == sorted(rates, reverse=True)  # decays over the budget, whatever the step time
    assert trainer.current_lr() < 0.5e-3  # past half the budget (a step of this model takes far less than 1.5 s)
    assert read_log(config)[-1]["event"] == "end"


def test_mixed_precision_options_are_checked():
    assert TrainConfig.from_dict({"amp_dtype": "bfloat16"}).amp_dtype == "bfloat16"
    with pytest.raises(TrainingError, match="amp_dtype must be float16 or bfloat16"):
        TrainConfig.from_dict({"amp_dtype": "float8"})
    with pytest.raises(TrainingError, match="time_budget_s must be positive"):
        TrainConfig.from_dict({"time_budget_s": 0})
