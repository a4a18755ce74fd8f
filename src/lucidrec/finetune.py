"""Fine-tune the text encoder on behaviour: items a user interacted with close together in time are positives.

The objective is MultipleNegativesRanking-style: for a batch of (anchor item, positive item) pairs, each anchor's
text must be closer (cosine, scaled) to its own positive than to every other positive in the batch, and the other
way round (symmetric). Pairs come ONLY from the interactions passed in (the protocol's train part); validation
holds out a seeded fraction of those items entirely, so the validation loss measures what cold items need:
generalisation to texts the encoder never trained on. Full fine-tuning or LoRA (peft; merged before saving).

The output folder is an ordinary sentence-transformers folder (usable as ``lucidrec train --encoder DIR``) with an
ONNX export in ``DIR/onnx`` and a report in ``DIR/finetune.json``. While training, ``DIR/checkpoint`` holds
everything needed to resume after a crash or Ctrl-C (trainable weights, best weights, optimizer, scheduler,
step, RNG state); it is removed when the run finishes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lucidrec.errors import ConfigError, DependencyError, LucidrecError, ModelError

if TYPE_CHECKING:
    import pandas as pd

REPORT = "finetune.json"
CHECKPOINT = "checkpoint"
# Hyperparameters that must match for a checkpoint to be resumed (the rest may change, e.g. eval cadence).
_RESUME_KEYS = ("lora", "lora_r", "lora_alpha", "batch_size", "lr", "warmup", "seed", "max_length", "window", "scale")


@dataclass
class FinetuneConfig:
    steps: int = 300
    batch_size: int = 32
    lr: float | None = None  # None: 3e-5 for full fine-tuning, 3e-4 for LoRA
    warmup: int = 30  # linear warm-up steps, then linear decay to 0 at ``steps``
    weight_decay: float = 0.01
    seed: int = 2026
    max_length: int = 32  # tokens; ML-100K item texts are 15-34 tokens
    window: int = 5  # a user's items at most this many positions apart (by time) form positive pairs
    scale: float = 20.0  # cosine-similarity temperature of the loss (as in MultipleNegativesRankingLoss)
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    valid_items: float = 0.05  # fraction of training items held out entirely for validation
    valid_pairs: int = 512
    eval_every: int = 50
    patience: int = 4  # evaluations without a better validation loss before stopping
    checkpoint_every: int = 50

    def __post_init__(self):
        for name in ("steps", "batch_size", "max_length", "window", "eval_every", "checkpoint_every", "lora_r"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1. Fix: pass 1 or more."
                )
        if self.batch_size < 2:
            raise ConfigError(
                f"--batch-size {self.batch_size}: in-batch negatives need at least 2 pairs. Fix: pass 2 or more."
            )
        if self.warmup < 0 or self.patience < 0:
            raise ConfigError("--warmup and --patience must be >= 0. Fix: pass 0 or a positive number.")
        if self.lr is not None and not (0 < self.lr < 1):
            raise ConfigError(f"--lr {self.lr}: must be in (0, 1). Fix: try 3e-5 (full) or 3e-4 (LoRA).")
        if not (0 < self.valid_items < 0.5):
            raise ConfigError(f"valid_items={self.valid_items}: must be in (0, 0.5). Fix: use e.g. 0.05.")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (3e-4 if self.lora else 3e-5)

    def to_dict(self) -> dict:
        return {**asdict(self), "lr": self.learning_rate}


# ====================================================================== pairs
@dataclass
class BehaviourPairs:
    """Item-index pairs: ``train`` never touches ``valid_items``; each ``valid`` pair has one held-out item."""

    train: np.ndarray  # (n, 2) int64
    valid: np.ndarray  # (m, 2) int64, column 1 is the held-out item
    valid_items: np.ndarray


def cooccurrence_pairs(frame: pd.DataFrame, window: int) -> np.ndarray:
    """(a, b) for every user's items at most ``window`` positions apart in time order (ties by item)."""
    u = frame["uidx"].to_numpy()
    order = np.lexsort((frame["iidx"].to_numpy(), frame["timestamp"].to_numpy(), u))
    u, it = u[order], frame["iidx"].to_numpy()[order].astype(np.int64)
    out = [np.zeros((0, 2), np.int64)]
    for d in range(1, window + 1):
        same = u[d:] == u[:-d]
        out.append(np.stack([it[:-d][same], it[d:][same]], axis=1))
    pairs = np.concatenate(out)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def build_pairs(train: pd.DataFrame, cfg: FinetuneConfig, forbidden_items: np.ndarray | None = None) -> BehaviourPairs:
    """Positive pairs from ``train`` only. ``forbidden_items`` (e.g. the cold protocol's held-out items) must not
    occur in ``train`` at all: that is checked, not assumed, because a leak would inflate every cold number."""
    if forbidden_items is not None and len(forbidden_items):
        leaked = np.isin(train["iidx"].to_numpy(), forbidden_items)
        if leaked.any():
            raise ModelError(
                f"{int(leaked.sum())} training interactions touch held-out (cold) items. Fix: fine-tune on the "
                "split's train part only (split(dataset, 'cold').train)."
            )
    pairs = cooccurrence_pairs(train, cfg.window)
    if len(pairs) == 0:
        raise ConfigError(
            "the training interactions give no positive pairs (every user has a single item). Fix: use a dataset "
            "where users have several interactions, or a larger --window."
        )
    rng = np.random.default_rng([cfg.seed, 1])
    used = np.unique(pairs)
    n_valid = max(1, int(round(cfg.valid_items * len(used))))
    valid_items = np.sort(rng.choice(used, size=n_valid, replace=False))
    held = np.isin(pairs, valid_items)
    train_pairs = pairs[~held.any(1)]
    cross = pairs[held[:, 0] ^ held[:, 1]]
    # orient validation pairs as (seen item, held-out item): "does the text of a new item land near what the
    # same users watched?" — the cold-item question.
    swap = np.isin(cross[:, 0], valid_items)
    cross[swap] = cross[swap][:, ::-1]
    if len(cross) > cfg.valid_pairs:
        cross = cross[np.sort(rng.choice(len(cross), size=cfg.valid_pairs, replace=False))]
    if len(train_pairs) < cfg.batch_size or len(cross) < 2:
        raise ConfigError(
            f"only {len(train_pairs)} training and {len(cross)} validation pairs. Fix: use more interactions, "
            "a larger --window or a smaller --batch-size."
        )
    return BehaviourPairs(train_pairs, cross, valid_items)


class BatchSchedule:
    """Batch ``step`` is a pure function of (seed, step): a resumed run sees exactly the batches it would have."""

    def __init__(self, pairs: np.ndarray, batch_size: int, seed: int):
        self.pairs, self.batch_size, self.seed = pairs, batch_size, seed
        self.per_epoch = max(1, len(pairs) // batch_size)
        self._epoch, self._perm = -1, None

    def batch(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, 2, epoch]).permutation(len(self.pairs))
        return self.pairs[self._perm[k * self.batch_size : (k + 1) * self.batch_size]]


# ====================================================================== model
def _require_train_deps(lora: bool):
    try:
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise DependencyError(
            "fine-tuning needs torch and sentence-transformers. Fix: pip install 'lucidrec[train]'."
        ) from None
    if lora:
        try:
            import peft  # noqa: F401
        except ImportError:
            raise DependencyError("--lora needs peft. Fix: pip install 'lucidrec[finetune]'.") from None


def _load_model(base: str | None, cfg: FinetuneConfig):
    """The sentence-transformers model to train, with LoRA adapters injected when asked."""
    from sentence_transformers import SentenceTransformer

    from lucidrec.encoders import resolve_model_path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = resolve_model_path(base)
    model = SentenceTransformer(str(path), device="cpu")
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        transformer = model[0]
        for p in transformer.model.parameters():
            p.requires_grad_(False)
        lcfg = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=["query", "key", "value"],  # attention projections: a light, standard choice
            bias="none",
        )
        transformer.model = get_peft_model(transformer.model, lcfg)
    return model, path


def _trainable(model) -> dict:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _snapshot(model) -> dict:
    return {n: p.detach().clone().contiguous() for n, p in _trainable(model).items()}


def _restore(model, state: dict):
    import torch

    params = _trainable(model)
    missing = set(params) - set(state)
    if missing:
        raise ModelError(
            f"checkpoint lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]}). Fix: it belongs to a "
            "different model or mode; start again with --overwrite."
        )
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state[n])


class _Texts:
    """Tokenises the unique items of a batch (each text once) and returns their embeddings."""

    def __init__(self, model, texts: list[str]):
        self.model, self.texts = model, texts

    def embed(self, items: np.ndarray):
        uniq, inv = np.unique(items, return_inverse=True)
        # sentence-transformers >= 6 renamed tokenize to preprocess; older versions only have tokenize
        prep = getattr(self.model, "preprocess", None) or self.model.tokenize
        feats = prep([self.texts[i] for i in uniq])
        return self.model(dict(feats))["sentence_embedding"], inv.reshape(items.shape)


def pair_loss(model, texts: _Texts, batch: np.ndarray, scale: float):
    """Symmetric in-batch-negatives loss and accuracy for (anchor, positive) item pairs.

    A pair's item that recurs elsewhere in the batch is masked out as a negative: it is not a negative."""
    import torch
    import torch.nn.functional as F

    emb, inv = texts.embed(batch)
    emb = F.normalize(emb, dim=-1)
    a, p = emb[inv[:, 0]], emb[inv[:, 1]]
    sims = scale * a @ p.T
    n = len(batch)
    eye = torch.eye(n, dtype=torch.bool)
    ids = torch.as_tensor(batch)
    same_pos = (ids[:, 1][None, :] == ids[:, 1][:, None]) & ~eye
    same_anc = (ids[:, 0][None, :] == ids[:, 0][:, None]) & ~eye
    target = torch.arange(n)
    fwd = sims.masked_fill(same_pos, float("-inf"))
    bwd = sims.T.masked_fill(same_anc, float("-inf"))
    loss = (F.cross_entropy(fwd, target) + F.cross_entropy(bwd, target)) / 2
    acc = (fwd.argmax(1) == target).float().mean()
    return loss, acc


def validate(model, texts: _Texts, pairs: np.ndarray, batch_size: int, scale: float) -> dict:
    """Mean loss and in-batch accuracy over fixed batches of held-out pairs (no dropout, no gradients)."""
    import torch

    was_training = model.training
    model.eval()
    losses, accs, weights = [], [], []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            b = pairs[start : start + batch_size]
            if len(b) < 2:
                continue
            loss, acc = pair_loss(model, texts, b, scale)
            losses.append(float(loss)), accs.append(float(acc)), weights.append(len(b))
    model.train(was_training)
    w = np.asarray(weights, float)
    return {"loss": float(np.average(losses, weights=w)), "acc": float(np.average(accs, weights=w))}


# ====================================================================== checkpoints
def _save_checkpoint(folder: Path, model, best: dict, optimizer, scheduler, state: dict):
    """Write the checkpoint to a temporary folder and swap it in: a crash mid-write leaves the old one intact."""
    import torch
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_snapshot(model), str(tmp / "trainable.safetensors"))
    save_file(best, str(tmp / "best.safetensors"))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()},
        tmp / "optim.pt",
    )
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _check_resumable(folder: Path, cfg: FinetuneConfig):
    """Refuse to continue a checkpoint with other hyperparameters: the result would match neither run."""
    try:
        saved = json.loads((folder / "state.json").read_text())["config"]
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"{folder}: unreadable checkpoint ({e}). Fix: start again with --overwrite.") from None
    now = cfg.to_dict()
    changed = [k for k in _RESUME_KEYS if saved.get(k) != now.get(k)]
    if changed:
        raise ConfigError(
            f"--resume: the checkpoint was made with different {', '.join(changed)} "
            f"({', '.join(f'{k}={saved.get(k)}' for k in changed)}). Fix: pass the same values, or --overwrite."
        )
    if saved.get("steps") != cfg.steps:
        raise ConfigError(
            f"--steps {cfg.steps}: the checkpoint's run was planned for {saved.get('steps')} steps (its learning "
            f"rate schedule depends on it). Fix: pass --steps {saved.get('steps')}."
        )


def _load_checkpoint(folder: Path, model, optimizer, scheduler) -> tuple[dict, dict]:
    import torch
    from safetensors.torch import load_file

    try:
        state = json.loads((folder / "state.json").read_text())
        _restore(model, load_file(str(folder / "trainable.safetensors")))
        best = load_file(str(folder / "best.safetensors"))
        optim = torch.load(folder / "optim.pt", weights_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"{folder}: unreadable checkpoint ({e}). Fix: start again with --overwrite.") from None
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    torch.set_rng_state(optim["torch_rng"])
    return state, best


# ====================================================================== training
def finetune_encoder(
    dataset,
    train: pd.DataFrame,
    out_dir: str | Path,
    cfg: FinetuneConfig | None = None,
    base: str | None = None,
    forbidden_items: np.ndarray | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log_dir: str | None = None,
    export_onnx: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> dict:
    """Fine-tune ``base`` (default: packaged all-MiniLM-L6-v2) on ``train`` and save it to ``out_dir``.

    ``callback(step, loss)`` runs after every optimizer step (e.g. for custom logging; an exception it raises
    stops training like Ctrl-C, after a checkpoint). Returns the report also written to ``out_dir/finetune.json``.
    """
    cfg = cfg or FinetuneConfig()
    _require_train_deps(cfg.lora)
    import torch

    from lucidrec.data.text import ItemTextBuilder

    out = Path(out_dir)
    ckpt = _checkpoint_folder(out, cfg, resume, overwrite)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    pairs = build_pairs(train, cfg, forbidden_items)
    texts_list = ItemTextBuilder().build(dataset)
    model, base_path = _load_model(base, cfg)
    serve_max_len = model.max_seq_length
    model.max_seq_length = cfg.max_length
    run = _Run(model, _Texts(model, texts_list), pairs, cfg, ckpt)
    run.start(resume)
    run.train(progress, log_dir, callback)
    # the best weights by validation loss, LoRA merged into the base weights, at the serving token limit
    _restore(model, run.best)
    if cfg.lora:
        model[0].model = model[0].model.merge_and_unload()
    model.max_seq_length = serve_max_len
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    report = {"base": str(base_path), **run.report()}
    if export_onnx:
        report["onnx_max_abs_diff"] = export_and_check(out, texts_list[:64])
    report["seconds"] = round(time.perf_counter() - t0, 1)
    (out / REPORT).write_text(json.dumps(report, indent=1))
    shutil.rmtree(ckpt, ignore_errors=True)
    return report


def _checkpoint_folder(out: Path, cfg: FinetuneConfig, resume: bool, overwrite: bool) -> Path:
    """``out``'s checkpoint folder, after the checks of --resume / --overwrite against what is there."""
    ckpt = out / CHECKPOINT
    if ckpt.exists() and not (resume or overwrite):
        raise ConfigError(
            f"--out {out}: holds an unfinished run's checkpoint. Fix: pass --resume to continue it, or --overwrite "
            "to start again."
        )
    if overwrite and not resume:
        shutil.rmtree(ckpt, ignore_errors=True)
    if resume and not ckpt.exists():
        raise ConfigError(f"--resume: no checkpoint in {ckpt}. Fix: drop --resume to start a new run.")
    if resume:
        _check_resumable(ckpt, cfg)
    return ckpt


def _tensorboard(log_dir: str | None):
    if not log_dir:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DependencyError("--tensorboard needs tensorboard. Fix: pip install tensorboard.") from None
    return SummaryWriter(log_dir)


class _Run:
    """One fine-tuning run: the optimizer and its schedule, the run's state (step, validation history, best
    weights), the training loop with periodic checkpoints and a clean stop on Ctrl-C."""

    def __init__(self, model, texts: _Texts, pairs: BehaviourPairs, cfg: FinetuneConfig, ckpt: Path):
        import torch

        self.model, self.texts, self.pairs, self.cfg, self.ckpt = model, texts, pairs, cfg, ckpt
        self.params = list(_trainable(model).values())
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.schedule = BatchSchedule(pairs.train, cfg.batch_size, cfg.seed)
        self.state: dict = {}
        self.best: dict = {}
        self.step = 0
        self.running: float | None = None
        self.writer = None
        self.bar = None
        self.run_t0 = time.perf_counter()

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then linear decay to zero at the last step."""
        cfg = self.cfg
        if step < cfg.warmup:
            return (step + 1) / (cfg.warmup + 1)
        return max(0.0, (cfg.steps - step) / max(1, cfg.steps - cfg.warmup))

    def start(self, resume: bool) -> None:
        """The run's state: the checkpoint's when resuming, else step 0 with the base model's validation."""
        if resume:
            self.state, self.best = _load_checkpoint(self.ckpt, self.model, self.optimizer, self.scheduler)
        else:
            self.model.train()
            base_val = self._validate()
            self.best = _snapshot(self.model)
            self.state = {
                "config": self.cfg.to_dict(),
                "step": 0,
                "best_step": 0,
                "best_loss": base_val["loss"],
                "bad_evals": 0,
                "history": [{"step": 0, "val_loss": base_val["loss"], "val_acc": base_val["acc"]}],
                "stopped_early": False,
                "seconds_before_resume": 0.0,
            }
        self.step = self.state["step"]

    def _validate(self) -> dict:
        return validate(self.model, self.texts, self.pairs.valid, self.cfg.batch_size, self.cfg.scale)

    def snapshot_state(self) -> dict:
        return {
            **self.state,
            "step": self.step,
            "seconds_before_resume": self.state["seconds_before_resume"] + time.perf_counter() - self.run_t0,
        }

    def _checkpoint(self) -> None:
        _save_checkpoint(self.ckpt, self.model, self.best, self.optimizer, self.scheduler, self.snapshot_state())

    def train(self, progress: bool, log_dir: str | None, callback) -> None:
        """Steps until the last one or early stopping. Ctrl-C only sets a flag, honoured between steps (a
        checkpoint written mid-update would mix two steps); a second Ctrl-C stops at once (the last periodic
        checkpoint stays valid). Any stop between steps saves a checkpoint to resume from."""
        from tqdm.auto import tqdm

        self.writer = _tensorboard(log_dir)
        self.model.train()
        self.bar = tqdm(
            total=self.cfg.steps, initial=self.step, desc="fine-tune", disable=not progress, dynamic_ncols=True
        )
        self.run_t0 = time.perf_counter()
        interrupt = {"asked": False}

        def on_sigint(signum, frame):
            if interrupt["asked"]:
                raise KeyboardInterrupt
            interrupt["asked"] = True

        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGINT, on_sigint)
        at_boundary = True  # True between steps: the model, optimizer and state describe the same step
        try:
            while self.step < self.cfg.steps and not self.state["stopped_early"]:
                at_boundary = False
                lv = self._one_step()
                at_boundary = True
                if callback is not None:
                    callback(self.step, lv)
                if interrupt["asked"]:
                    raise KeyboardInterrupt
        except BaseException as e:
            self._close()
            self._stopped(e, at_boundary)
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        self._close()

    def _one_step(self) -> float:
        import torch

        cfg = self.cfg
        loss, acc = pair_loss(self.model, self.texts, self.schedule.batch(self.step), cfg.scale)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        lv = loss.item()
        self.running = lv if self.running is None else 0.9 * self.running + 0.1 * lv
        if self.writer:
            self.writer.add_scalar("train/loss", lv, self.step)
            self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
        if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
            self._evaluate()
        else:
            self.bar.set_postfix(loss=f"{self.running:.3f}")
        self.bar.update(1)
        if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
            self._checkpoint()
        return lv

    def _evaluate(self) -> None:
        """Validation at this step: the best weights kept, early stopping after ``patience`` bad evaluations."""
        v = self._validate()
        state, step = self.state, self.step
        state["history"].append({"step": step, "train_loss": self.running, "val_loss": v["loss"], "val_acc": v["acc"]})
        if self.writer:
            self.writer.add_scalar("valid/loss", v["loss"], step)
            self.writer.add_scalar("valid/acc", v["acc"], step)
        if v["loss"] < state["best_loss"] - 1e-4:
            state.update(best_loss=v["loss"], best_step=step, bad_evals=0)
            self.best = _snapshot(self.model)
        else:
            state["bad_evals"] += 1
            state["stopped_early"] = state["bad_evals"] > self.cfg.patience
        self.bar.set_postfix(loss=f"{self.running:.3f}", val=f"{v['loss']:.3f}", acc=f"{v['acc']:.2f}")

    def _stopped(self, e: BaseException, at_boundary: bool) -> None:
        """A stop before the end: a checkpoint when between steps; Ctrl-C becomes a clear LucidrecError."""
        step, ckpt = self.step, self.ckpt
        saved = at_boundary and step > 0 and not isinstance(e, LucidrecError)
        if saved:
            self._checkpoint()
        if isinstance(e, KeyboardInterrupt):
            where = f"checkpoint of step {step} saved" if saved else "the last periodic checkpoint (if any) is kept"
            raise LucidrecError(
                f"interrupted at step {step}/{self.cfg.steps}; {where} in {ckpt}. Fix: rerun the same command with "
                "--resume to continue."
            ) from None

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer:
            self.writer.close()

    def report(self) -> dict:
        cfg, state, pairs = self.cfg, self.state, self.pairs
        return {
            "config": cfg.to_dict(),
            "mode": "lora" if cfg.lora else "full",
            "steps": self.step,
            "best_step": state["best_step"],
            "stopped_early": state["stopped_early"],
            "history": state["history"],
            "n_train_pairs": int(len(pairs.train)),
            "n_valid_pairs": int(len(pairs.valid)),
            "n_valid_items": int(len(pairs.valid_items)),
            "n_trainable_params": int(sum(p.numel() for p in self.params)),
            "train_seconds": round(state["seconds_before_resume"] + time.perf_counter() - self.run_t0, 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
        }


def export_and_check(folder: Path, sample: list[str]) -> float:
    """Export ``folder`` to ``folder/onnx`` and return the largest |torch - onnx| embedding difference on ``sample``."""
    from lucidrec.encoders import OnnxEncoder, SentenceTransformerEncoder

    st = SentenceTransformerEncoder(str(folder))
    st.export_onnx(folder / "onnx")
    diff = float(np.abs(st.encode(sample) - OnnxEncoder(folder / "onnx").encode(sample)).max())
    if diff > 1e-4:
        raise ModelError(f"{folder}/onnx: the ONNX export differs from torch by {diff:.2e}. Fix: report this as a bug.")
    return diff


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is in KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


__all__ = [
    "FinetuneConfig",
    "BehaviourPairs",
    "build_pairs",
    "cooccurrence_pairs",
    "finetune_encoder",
    "export_and_check",
]
