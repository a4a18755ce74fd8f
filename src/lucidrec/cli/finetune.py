"""CLI command ``lucidrec finetune-encoder``: fine-tune the text encoder on behaviour pairs
(:func:`lucidrec.finetune.finetune_encoder`) and save an encoder folder."""

from __future__ import annotations

from pathlib import Path

import typer

from lucidrec.finetune import FinetuneConfig, finetune_encoder


def register(app: typer.Typer) -> None:
    from lucidrec.cli.common import DataOpt, ProtocolOpt, SeedOpt, _friendly, console

    @app.command("finetune-encoder")
    @_friendly
    def finetune_cmd(
        data: str = DataOpt,
        protocol: str = ProtocolOpt,
        out_dir: Path = typer.Option(Path("encoders/ml100k"), "--out", help="Sentence-transformers folder to write."),
        base: str | None = typer.Option(
            None, "--base", help="Encoder folder to start from (default: packaged MiniLM)."
        ),
        lora: bool = typer.Option(
            False, "--lora", help="Train LoRA adapters (peft) instead of all weights; merged on save."
        ),
        steps: int = typer.Option(300, "--steps", help="Optimizer steps (upper bound: early stopping may end sooner)."),
        batch_size: int = typer.Option(32, "--batch-size", help="Pairs per step; the other pairs are the negatives."),
        lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default 3e-5 full, 3e-4 LoRA)."),
        warmup: int = typer.Option(30, "--warmup", help="Linear warm-up steps."),
        seed: int = SeedOpt,
        max_length: int = typer.Option(32, "--max-length", help="Token limit while training."),
        window: int = typer.Option(
            5, "--window", help="Items at most this many positions apart in time are positives."
        ),
        eval_every: int = typer.Option(50, "--eval-every", help="Validate (and maybe stop early) every N steps."),
        patience: int = typer.Option(4, "--patience", help="Evaluations without improvement before stopping."),
        log_dir: str | None = typer.Option(None, "--tensorboard", help="Write TensorBoard logs here."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in OUT/checkpoint."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Discard an unfinished run's checkpoint."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ):
        """Fine-tune the text encoder on the protocol's train part (behaviour pairs) and save an encoder folder."""
        from lucidrec.data import load_dataset
        from lucidrec.splits import split

        cfg = FinetuneConfig(
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            warmup=warmup,
            seed=seed,
            max_length=max_length,
            window=window,
            eval_every=eval_every,
            patience=patience,
            checkpoint_every=eval_every,
            lora=lora,
        )
        ds = load_dataset(data)
        s = split(ds, protocol, seed)
        rep = finetune_encoder(
            ds,
            s.train,
            out_dir,
            cfg,
            base=base,
            forbidden_items=s.cold_items,
            resume=resume,
            overwrite=overwrite,
            progress=not quiet,
            log_dir=log_dir,
        )
        first, best = rep["history"][0], next(h for h in rep["history"] if h["step"] == rep["best_step"])
        console.print(
            f"saved to {out_dir} ({rep['mode']}, {rep['steps']} steps, best at {rep['best_step']}; held-out pairs: "
            f"loss {first['val_loss']:.3f} -> {best['val_loss']:.3f}, in-batch accuracy {first['val_acc']:.3f} -> "
            f"{best['val_acc']:.3f}; {rep['train_seconds']} s, peak {rep['peak_rss_mb']:.0f} MB). "
            f"Use it: lucidrec train --encoder {out_dir}"
        )


__all__ = ["register"]
