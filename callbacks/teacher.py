"""TeacherCallback: the frozen full-video teacher, held outside the student's LightningModule.

It answers two questions for a student stage (it sets ``pl_module.teacher_source = self``):

- :meth:`TeacherCallback.accuracy`: C-GRPO's a_teacher, the mean Video-R1 accuracy of
  ``num_samples`` sampled teacher completions on the full video (the share correct for
  multiple choice and numerical questions, ``marc.rl.video_r1``) (all frames, the
  ``Identity`` compressor, no budget). It only depends on the question and the teacher, so
  it is cached on disk and computed once across epochs and runs.
- :meth:`TeacherCallback.completion_logits`: the teacher's teacher-forced logits on given
  completions, laid out like the student's ``completion_logprobs(..., return_logits=True)``
  (used by ``CompressorWarmup``'s distillation term).

Cache layout: ``cache_dir/<fingerprint>/entries.json``, written by global rank 0 alone
(temporary file, then ``os.replace``). Under several processes every rank computes the
values of its own batches; after each training batch the new entries of all ranks are
gathered, every rank adds them to its lookups and rank 0 writes the file, so each value is
computed once and read by all. The fingerprint covers the teacher's files (names, sizes,
modification times, the first MiB of each) and every sampling setting, so a retrained
teacher or different settings never read stale values. An entry also holds a hash of its
question (text, solution, video shape) and counts as a miss when that differs. The entries
and the hit and miss counts are also part of the callback's checkpoint state, so a resumed
run finds what the interrupted one knew at its checkpoint. (Caches of earlier versions,
one ``rank<r>.json`` per process, are still read.)
A cache file that is not valid JSON, or an entry without an a_teacher in [0, 1], raises
:class:`TeacherCacheError` naming the file (deleting it recomputes its values).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

from marc.compression import Budget, CompressedVideo, Identity
from marc.io import read_lock
from marc.models.vlm import VideoVLM
from marc.rl.answers import SCORING_VERSION, is_correct
from marc.rl.video_r1 import video_r1_score

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_FILE = "entries.json"
_PREFIX_BYTES = 1 << 20


class TeacherCallback(Callback):
    """Frozen teacher for a student stage: full-video accuracy (cached) and logits.

    Args:
        path: the teacher's export folder (``save_pretrained`` format).
        num_samples: sampled completions per question for a_teacher.
        max_new_tokens / temperature / top_p: sampling settings of those completions.
        cache_dir: where a_teacher values are stored; None keeps them in memory only.
        seed: seed of the teacher's sampling (combined with the batch's question ids).
        use_full_video: the teacher sees ``batch["video"]`` (all frames); False gives it the
            retriever's ``batch["retrieved_video"]`` instead, still uncompressed.
        torch_dtype: dtype to load the teacher in (e.g. ``"bfloat16"``); None keeps the saved one.
    """

    def __init__(
        self,
        path: str,
        num_samples: int = 8,
        max_new_tokens: int = 48,
        temperature: float = 1.0,
        top_p: float = 0.95,
        cache_dir: str | None = "artifacts/teacher_cache",
        seed: int = 0,
        use_full_video: bool = True,
        torch_dtype: str | None = None,
    ):
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        self.path = Path(path)
        self.num_samples = num_samples
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.seed = seed
        self.use_full_video = use_full_video
        self.torch_dtype = torch_dtype
        self.teacher: VideoVLM | None = None
        self.fingerprint: str | None = None
        self.rank = 0
        self.world_size = 1
        self.hits = 0
        self.misses = 0
        self._cache: dict[str, dict[str, Any]] = {}  # every rank's entries (lookups)
        self._new: dict[str, dict[str, Any]] = {}  # computed here, not yet shared or written
        self._module: L.LightningModule | None = None
        self._compressor = Identity()

    # ---------------------------------------------------------------------------- setup
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Load the frozen teacher and the cache; become ``pl_module.teacher_source``."""
        self.attach(pl_module, rank=trainer.global_rank, world_size=trainer.world_size)

    def attach(self, pl_module: L.LightningModule, rank: int = 0, world_size: int = 1) -> None:
        """What ``setup`` does, for use without a Trainer."""
        # One read lock over the weights and their fingerprint: a teacher exported by another
        # process meanwhile cannot have its values cached under the old one's fingerprint.
        with read_lock(self.path):
            if self.teacher is None:
                self.teacher = load_frozen_teacher(self.path, self.torch_dtype)
            self.fingerprint = teacher_fingerprint(self.path, self.settings())
        self.rank, self.world_size = rank, world_size
        self._module = pl_module
        self._load_cache()
        pl_module.teacher_source = self

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        student = getattr(pl_module, "vlm", None)
        if student is not None:
            check_same_vocabulary(self._teacher(), student)

    def settings(self) -> dict[str, Any]:
        """The settings a_teacher depends on (part of the cache fingerprint)."""
        return {
            "num_samples": self.num_samples,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "use_full_video": self.use_full_video,
            "scoring_version": SCORING_VERSION,
        }

    # ---------------------------------------------------------------------- the answers
    @torch.no_grad()
    def accuracy(self, batch: dict) -> torch.Tensor:
        """a_teacher ``[B]``: mean accuracy of ``num_samples`` teacher samples per question."""
        teacher = self._teacher()
        frames = self._frames(batch)
        keys = [
            _question_hash(batch["prompt"][i], batch["solution"][i], tuple(frames[i].shape))
            for i in range(len(frames))
        ]
        missing = [
            i
            for i, (problem_id, key) in enumerate(zip(batch["problem_id"], keys))
            if self._cache.get(problem_id, {}).get("question_hash") != key
        ]
        self.hits += len(frames) - len(missing)
        self.misses += len(missing)
        if missing:
            ids = [batch["problem_id"][i] for i in missing]
            output = teacher.generate(
                self._videos([frames[i] for i in missing]),
                [batch["prompt"][i] for i in missing],
                num_return_sequences=self.num_samples,
                max_new_tokens=self.max_new_tokens,
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                # Seeded by the questions, so a value does not depend on what ran before.
                seed=self.seed ^ zlib.crc32("|".join(ids).encode()),
            )
            for row, i in enumerate(missing):
                texts = output.texts[row * self.num_samples : (row + 1) * self.num_samples]
                question = (batch["solution"][i], batch["problem_type"][i], batch["options"][i])
                correct = sum(
                    is_correct(text, *question[:2], options=question[2]) for text in texts
                )
                score = sum(video_r1_score(text, *question) for text in texts)
                entry = {
                    "a_teacher": score / self.num_samples,
                    "correct": correct,
                    "samples": self.num_samples,
                    "question_hash": keys[i],
                }
                self._cache[batch["problem_id"][i]] = entry
                self._new[batch["problem_id"][i]] = entry
            if self.world_size == 1:
                self._share_new_entries()
        values = [self._cache[problem_id]["a_teacher"] for problem_id in batch["problem_id"]]
        return torch.tensor(values, dtype=torch.float32, device=teacher.device)

    @torch.no_grad()
    def completion_logits(self, batch: dict, completions: list[str]) -> torch.Tensor:
        """Teacher-forced logits ``[B, L, V]`` of string completions on the full video."""
        teacher = self._teacher()
        student = getattr(self._module, "vlm", None)
        if student is not None:
            check_same_vocabulary(teacher, student)
        videos = self._videos(self._frames(batch))
        return teacher.completion_logprobs(
            videos, batch["prompt"], completions, return_logits=True
        ).logits

    # ------------------------------------------------------------ sharing and logging
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Every rank passes here once per batch: the one place to exchange new entries.
        self._share_new_entries()
        if self.hits + self.misses:
            size = batch.get("batch_size") or 1
            pl_module.log("teacher/cache_hits", float(self.hits), batch_size=size)
            pl_module.log("teacher/cache_misses", float(self.misses), batch_size=size)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._share_new_entries()  # values asked for outside training steps, if any

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._share_new_entries()

    def state_dict(self) -> dict[str, Any]:
        """The entries known now and the hit and miss counts (part of every checkpoint)."""
        return {
            "fingerprint": self.fingerprint,
            "entries": dict(self._cache),
            "hits": self.hits,
            "misses": self.misses,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a checkpoint's entries (same teacher and settings only) and counts."""
        self.hits, self.misses = state_dict.get("hits", 0), state_dict.get("misses", 0)
        if state_dict.get("fingerprint") != self.fingerprint:
            log.warning("the checkpoint's teacher cache is for another teacher or settings")
            return
        self._cache.update(state_dict.get("entries", {}))

    # -------------------------------------------------------------------------- helpers
    def _share_new_entries(self) -> None:
        """Give every rank the entries any rank computed since the last call; rank 0 saves."""
        new = self._new
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered: list[dict[str, dict[str, Any]] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, new)
            new = {k: v for part in gathered for k, v in (part or {}).items()}
            self._cache.update(new)
        self._new = {}
        if new and self.rank == 0:
            self._save_cache()

    def _teacher(self) -> VideoVLM:
        if self.teacher is None:
            raise RuntimeError("TeacherCallback is not set up: add it to trainer.callbacks")
        # setup runs before the strategy moves the student, so follow it to its device here.
        device = getattr(self._module, "device", None)
        if device is not None and self.teacher.device != device:
            self.teacher.to(device)
        return self.teacher

    def _frames(self, batch: dict) -> list[torch.Tensor]:
        key = "video" if self.use_full_video else "retrieved_video"
        if key not in batch:
            raise ValueError(
                f"TeacherCallback(use_full_video={self.use_full_video}) needs batch[{key!r}]"
            )
        return batch[key]

    def _videos(self, frames: list[torch.Tensor]) -> list[CompressedVideo]:
        teacher = self._teacher()
        return [teacher.compress(f, self._compressor, Budget(frames=1)) for f in frames]

    def _cache_folder(self) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / self.fingerprint

    def _load_cache(self) -> None:
        folder = self._cache_folder()
        if folder is None or not folder.is_dir():
            return
        # rank*.json: one file per process, as earlier versions wrote it.
        for file in [*sorted(folder.glob("rank*.json")), folder / CACHE_FILE]:
            if file.is_file():
                self._cache.update(read_cache_file(file))
        log.info("teacher cache %s: %d questions loaded", folder, len(self._cache))

    def _save_cache(self) -> None:
        """Write every known entry (rank 0 only), keeping any another run wrote meanwhile."""
        folder = self._cache_folder()
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / CACHE_FILE
        entries = {**(read_cache_file(target) if target.is_file() else {}), **self._cache}
        content = {
            "version": CACHE_VERSION,
            "teacher": str(self.path),
            "settings": self.settings(),
            "entries": entries,
        }
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, target)


class TeacherCacheError(ValueError):
    """A teacher cache file that is not what this code writes; the message names it."""


def read_cache_file(file: Path) -> dict[str, dict[str, Any]]:
    """The entries of one cache file, each checked; a bad file raises, naming it.

    A cache file is written atomically, so a bad one was damaged or written by another
    version: its values are not trusted, and deleting the file recomputes them.
    """
    fix = "delete it to recompute its values"
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TeacherCacheError(f"{file}: not valid JSON ({error}); {fix}") from error
    if not isinstance(content, dict) or not isinstance(content.get("entries"), dict):
        raise TeacherCacheError(f"{file}: expected an object with 'entries'; {fix}")
    if content.get("version") != CACHE_VERSION:
        raise TeacherCacheError(
            f"{file}: field 'version' is {content.get('version')!r}, this code reads "
            f"{CACHE_VERSION}; {fix}"
        )
    for problem_id, entry in content["entries"].items():
        a_teacher = entry.get("a_teacher") if isinstance(entry, dict) else None
        if not isinstance(a_teacher, (int, float)) or not 0.0 <= a_teacher <= 1.0:
            raise TeacherCacheError(
                f"{file}: entry {problem_id!r} has no a_teacher in [0, 1] ({entry!r}); {fix}"
            )
        if not isinstance(entry.get("question_hash"), str):
            raise TeacherCacheError(f"{file}: entry {problem_id!r} has no question_hash; {fix}")
    return content["entries"]


def load_frozen_teacher(path: str | Path, torch_dtype: str | None = None) -> VideoVLM:
    """Load a VideoVLM in eval mode with gradients off."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"teacher folder {path} does not exist; train it first "
            "(python main.py fit --config configs/teacher.yaml)"
        )
    dtype = getattr(torch, torch_dtype) if torch_dtype else None
    teacher = VideoVLM.from_pretrained(path, torch_dtype=dtype).eval()
    teacher.requires_grad_(False)
    return teacher


def check_same_vocabulary(teacher: VideoVLM, student: VideoVLM) -> None:
    """Raise when teacher and student logits are not over the same token ids."""
    sizes = {
        "teacher": (teacher.vocab_size, len(teacher.tokenizer)),
        "student": (student.vocab_size, len(student.tokenizer)),
    }
    if sizes["teacher"] != sizes["student"]:
        raise ValueError(
            "teacher and student must share a tokenizer: (LM vocab size, tokenizer length) is "
            f"{sizes['teacher']} for the teacher and {sizes['student']} for the student"
        )


def teacher_fingerprint(path: str | Path, settings: dict[str, Any]) -> str:
    """Short hash of the teacher's files (name, size, mtime, first MiB) and ``settings``."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        with file.open("rb") as handle:
            digest.update(handle.read(_PREFIX_BYTES))
    return digest.hexdigest()[:16]


def _question_hash(prompt: str, solution: str, video_shape: tuple[int, ...]) -> str:
    return hashlib.sha256(f"{prompt}\x00{solution}\x00{video_shape}".encode()).hexdigest()[:16]
