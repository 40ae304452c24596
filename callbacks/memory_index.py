"""MemoryIndexCallback: after retriever training, index the dataset's videos and save it all.

At the end of ``fit`` (and on demand through :meth:`MemoryIndexCallback.build`) the trained
encoders segment and embed every video of the data module's splits into a ``VideoMemory``,
on global rank 0 alone (every video, not a shard) while the other processes wait at a
barrier (under the strategy's timeout: ``DDPStrategy(timeout=...)`` for a large dataset);
the encoders, segmenter and memory are saved together (atomically) so later stages load
them with ``VisualMemoryRetriever.from_pretrained`` / ``data.retriever_dir``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from marc.data.video import VideoDecodeError
from marc.retrieval.memory import VideoMemory
from marc.retrieval.retriever import VisualMemoryRetriever
from marc.retrieval.segment import ContentChangeSegmenter, Segmenter, VideoSource

log = logging.getLogger(__name__)


class MemoryIndexCallback(L.Callback):
    """Build and save the clip memory of every video with the trained encoders.

    Args:
        directory: where the retriever (encoders, segmenter, memory) is saved.
        segmenter: how videos are cut into clips (default: content change, threshold 0.5).
        k: clips a question retrieves (the paper uses 3).
        max_clip_frames: frames kept per retrieved clip in the reconstruction (None: all).
        backend / M / ef_construction / ef: the memory's index (``hnsw`` or ``exact``).
        splits: which splits' videos to index.
    """

    def __init__(
        self,
        directory: str = "artifacts/retriever",
        segmenter: Segmenter | None = None,
        k: int = 3,
        max_clip_frames: int | None = None,
        backend: str = "hnsw",
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 64,
        splits: tuple[str, ...] = ("train", "val", "test"),
    ):
        self.directory = Path(directory)
        self.segmenter = segmenter if segmenter is not None else ContentChangeSegmenter()
        self.k = k
        self.max_clip_frames = max_clip_frames
        self.memory_args = {
            "backend": backend,
            "M": M,
            "ef_construction": ef_construction,
            "ef": ef,
        }
        self.splits = splits
        self.counts: dict[str, int] = {}  # what the last build indexed and left out

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.datamodule is not None:
            # Rank 0 indexes every video and writes the memory; the others wait for it, so
            # when fit returns on any rank the memory is there to be read.
            self.build(pl_module, trainer.datamodule)
            trainer.strategy.barrier("memory_index")

    @rank_zero_only
    def build(self, pl_module, datamodule) -> VisualMemoryRetriever:
        """Index every video of ``datamodule``'s splits and save the retriever."""
        retriever = VisualMemoryRetriever(
            self.segmenter,
            pl_module.clip_encoder,
            pl_module.query_encoder,
            memory=VideoMemory(pl_module.clip_encoder.embed_dim, **self.memory_args),
            k=self.k,
            max_clip_frames=self.max_clip_frames,
        )
        videos = skipped = images = 0
        for split in self.splits:
            if not datamodule.files[split].exists():
                continue
            dataset = datamodule.dataset(split)
            seen = set()
            for annotation in dataset.annotations:
                if annotation.data_type == "image":
                    images += 1  # a picture is its own retrieved video: nothing to index
                    continue
                if annotation.video_id in seen:
                    continue
                seen.add(annotation.video_id)
                try:
                    frames, source_indices = dataset.decode(annotation)
                except (FileNotFoundError, VideoDecodeError) as error:
                    if dataset.on_bad_sample == "raise":
                        raise
                    skipped += 1
                    log.warning(
                        "not indexing %s (%s): %s", annotation.video_id, annotation.source, error
                    )
                    continue
                source = VideoSource(str(annotation.video_path), source_indices)
                retriever.index_video(annotation.video_id, frames, source)
                videos += 1
        retriever.save_pretrained(self.directory)
        log.info(
            "indexed %d videos (%d clips) into %s; %d unreadable videos and %d image rows "
            "not indexed",
            videos,
            len(retriever.memory),
            self.directory,
            skipped,
            images,
        )
        self.counts = {"videos": videos, "skipped": skipped, "image_rows": images}
        return retriever
