"""VideoQADataModule: the one LightningDataModule every marc stage trains and tests on."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from marc.data.annotations import read_annotations
from marc.data.collate import collate_video_qa
from marc.data.dataset import BadSamplePolicy, VideoQADataset
from marc.data.samplers import EpochShuffleSampler, ResumableDataLoader, UnpaddedShardSampler
from marc.data.synthetic import GeneratorConfig, generate_dataset, is_generated

log = logging.getLogger(__name__)


def random_subset(rows: list, size: int, seed: int) -> list:
    """``size`` rows drawn at random with ``seed``, kept in their file order.

    The same seed draws the same rows on every process of a multi-GPU run.
    """
    if size < 1:
        raise ValueError(f"subset_size must be at least 1, got {size}")
    if size >= len(rows):
        return list(rows)
    chosen = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [rows[i] for i in chosen]


class VideoQADataModule(L.LightningDataModule):
    """Video question answering over Video-R1 style annotations and video files.

    When ``data_root`` holds no annotations and no annotation files are named, the
    embedded default (synthetic event-video QA) is generated there in ``prepare_data``. The
    defaults are the embedded default's settings (64 frames read at 56 px, batches of 16),
    so a stage config names only what it changes.

    Args:
        data_root: folder with ``{train,val,test}.jsonl`` and the videos they name.
        train_file / val_file / test_file: annotation files (JSON or JSONL) overriding the
            defaults under ``data_root``; relative video paths resolve against
            ``data_root``.
        generator: options of the embedded default's generator.
        fps / max_frames / frame_size: decoding (see ``marc.data.video.read_video``).
        batch_size / eval_batch_size / num_workers: loader settings.
        cache_frames: keep decoded frames in memory (per worker process); None (default)
            caches the generated embedded default, which is small, and nothing else.
        on_bad_sample: ``raise`` on a missing or corrupt video or malformed row, or
            ``skip`` it; skips are counted in ``skipped_samples`` and logged.
        limit_train / limit_eval: use only the first N questions (quick runs, tests).
        subset_size / subset_seed: train on ``subset_size`` questions drawn at random
            (with ``subset_seed``, in file order) from the training file's valid rows, the
            paper's 5K of Video-R1-260K; None trains on all. Drawn before ``limit_train``.
        retriever_dir: a folder saved by retriever pretraining
            (``VisualMemoryRetriever.save_pretrained``), loaded in ``setup``; then every
            sample also carries the reconstructed ``retrieved_video``.
        retriever_k: clips retrieved per question (None keeps the saved retriever's k).
        retriever: an already built ``VisualMemoryRetriever`` (from Python), instead of
            ``retriever_dir``.
        shuffle_seed: seed of the training order (None: the run's ``seed_everything``
            value).

    Loaders are sharded over the trainer's processes by the data module itself
    (``marc.data.samplers``): the training order depends on ``(shuffle_seed, epoch)`` only
    and its position is saved in checkpoints, so a resumed run draws the batches the
    uninterrupted one would; evaluation shards never repeat a question.
    """

    def __init__(
        self,
        data_root: str = "data/synthetic",
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        generator: GeneratorConfig | None = None,
        fps: float | None = None,
        max_frames: int | None = 64,
        frame_size: int | None = 56,
        batch_size: int = 16,
        eval_batch_size: int | None = 32,
        num_workers: int = 0,
        cache_frames: bool | None = None,
        on_bad_sample: BadSamplePolicy = "raise",
        limit_train: int | None = None,
        limit_eval: int | None = None,
        subset_size: int | None = None,
        subset_seed: int = 0,
        retriever_dir: str | None = None,
        retriever_k: int | None = None,
        retriever: Any = None,
        shuffle_seed: int | None = None,
    ):
        super().__init__()
        # The generator options stay out of hparams: checkpoints hold plain values only.
        self.save_hyperparameters(ignore=["retriever", "generator"])
        self.data_root = Path(data_root)
        self.files = {
            "train": Path(train_file) if train_file else self.data_root / "train.jsonl",
            "val": Path(val_file) if val_file else self.data_root / "val.jsonl",
            "test": Path(test_file) if test_file else self.data_root / "test.jsonl",
        }
        named = {"train": train_file, "val": val_file, "test": test_file}
        self.named_splits = {split for split, file in named.items() if file}
        self.uses_default_files = not self.named_splits
        self.generator = generator or GeneratorConfig()
        self.retriever = retriever
        self.datasets: dict[str, VideoQADataset] = {}
        self.skipped_rows = 0
        self.skipped_samples = 0

    @property
    def caches_frames(self) -> bool:
        """Whether decoded frames are kept in memory (see ``cache_frames``)."""
        if self.hparams.cache_frames is not None:
            return self.hparams.cache_frames
        return self.uses_default_files and is_generated(self.data_root)

    @property
    def frame_size(self) -> int | None:
        """The short side frames are decoded at (None: their stored size, rounded to 28 px)."""
        return self.hparams.frame_size

    @property
    def shuffle_seed(self) -> int:
        """Seed of the training order: ``shuffle_seed``, else the run's global seed (or 0)."""
        if self.hparams.shuffle_seed is not None:
            return self.hparams.shuffle_seed
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def _processes(self) -> tuple[int, int]:
        """(number of processes, this one's global rank) of the attached trainer."""
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def prepare_data(self) -> None:
        """Generate the embedded default dataset when the root has none (rank 0 only)."""
        if self.uses_default_files and not is_generated(self.data_root):
            if any(f.exists() for f in self.files.values()):
                return  # a user's own files under the default names: never overwrite them
            log.info("generating the embedded default dataset in %s", self.data_root)
            generate_dataset(self.data_root, self.generator)

    def load_retriever(self) -> Any:
        """The configured retriever, loaded from ``retriever_dir`` on first use."""
        if self.retriever is None and self.hparams.retriever_dir:
            from marc.retrieval.retriever import VisualMemoryRetriever

            path = Path(self.hparams.retriever_dir)
            if not path.exists():
                raise FileNotFoundError(
                    f"data.retriever_dir names a missing folder: {path} "
                    "(build it with: python main.py fit --config configs/retriever.yaml)"
                )
            self.retriever = VisualMemoryRetriever.from_pretrained(path)
        if self.retriever is not None and self.hparams.retriever_k is not None:
            self.retriever.k = self.hparams.retriever_k
        return self.retriever

    def dataset(self, split: str) -> VideoQADataset:
        """The dataset of one split (``train``, ``val`` or ``test``), built on first use."""
        if split not in self.datasets:
            hp = self.hparams
            rows, skipped = read_annotations(self.files[split], self.data_root, hp.on_bad_sample)
            self.skipped_rows += len(skipped)
            if split == "train" and hp.subset_size is not None:
                rows = random_subset(rows, hp.subset_size, hp.subset_seed)
            limit = hp.limit_train if split == "train" else hp.limit_eval
            if limit is not None:
                rows = rows[:limit]
            self.datasets[split] = VideoQADataset(
                rows,
                fps=hp.fps,
                max_frames=hp.max_frames,
                frame_size=hp.frame_size,
                cache_frames=self.caches_frames,
                on_bad_sample=hp.on_bad_sample,
                retriever=self.load_retriever(),
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        """Load the annotation files the stage needs.

        A missing test file is left out; so is a missing validation file when annotation
        files are named but not that one (Video-R1 ships a training file only: set
        ``trainer.limit_val_batches=0`` or name a ``val_file``).
        """
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        optional = {"test"} if self.uses_default_files else {"test", "val"} - self.named_splits
        for split in splits.get(stage, ("train", "val", "test")):
            if self.files[split].exists() or split not in optional:
                self.dataset(split)

    def _loader(self, split: str) -> DataLoader:
        hp = self.hparams
        dataset = self.dataset(split)
        num_replicas, rank = self._processes()
        common = {
            "num_workers": hp.num_workers,
            "collate_fn": collate_video_qa,
            "persistent_workers": hp.num_workers > 0,
        }
        if split == "train":
            sampler = EpochShuffleSampler(
                dataset, num_replicas, rank, shuffle=True, seed=self.shuffle_seed
            )
            return ResumableDataLoader(dataset, sampler=sampler, batch_size=hp.batch_size, **common)
        sampler = UnpaddedShardSampler(dataset, num_replicas, rank)
        batch_size = hp.eval_batch_size or hp.batch_size
        # A generator of its own leaves the global one alone (see ResumableDataLoader).
        generator = torch.Generator()
        return DataLoader(
            dataset, sampler=sampler, batch_size=batch_size, generator=generator, **common
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Count skipped samples in the main process (workers cannot share counters)."""
        skipped = batch.get("num_skipped", 0)
        if skipped:
            self.skipped_samples += int(skipped)
            log.warning("skipped %d bad samples so far", self.skipped_samples)
        return batch
