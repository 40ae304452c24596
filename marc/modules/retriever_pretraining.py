"""RetrieverPretraining: the contrastive dual encoder of the Visual Memory Retriever.

Each batch holds questions about videos with known event spans. Every event of every video
in the batch becomes a clip; the loss is symmetric InfoNCE with a learnable temperature
over clip/caption pairs and question/clip pairs. The candidates of a question are all
clips of the batch: in-batch negatives, and the other events of its own video as hard
negatives. Validation ranks the clips of each question's own (held-out) video and logs
recall@1, recall@5 and MRR with torchmetrics.

When the query encoder has a temporal relation head (``max_offset > 0``) it is trained with
cross-entropy on each question's offset: the first of its ``target_events`` is the event
the question names, the last the one that answers it (the same one for a one-event
question, offset 0); validation logs the head's accuracy as ``val/offset_acc``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR

from marc.modules.base import StageModule
from marc.modules.out_of_memory import names_memory_settings
from marc.retrieval.dual_encoder import check_one_dual_encoder
from marc.retrieval.encoders import ClipEncoder, ClipEncoderBase, QueryEncoder, QueryEncoderBase


def batch_clips(
    batch: dict,
) -> tuple[list[torch.Tensor], list[str], list[list[int]], dict[str, int]]:
    """Unique event clips of a batch, their captions, each question's positive clips, and
    the index of each video's first clip."""
    clips, captions, positives = [], [], []
    first_clip: dict[str, int] = {}
    for video, video_id, spans, texts, targets in zip(
        batch["video"],
        batch["video_id"],
        batch["event_spans"],
        batch["captions"],
        batch["target_events"],
    ):
        if video_id not in first_clip:
            first_clip[video_id] = len(clips)
            for (start, end), caption in zip(spans, texts):
                # An event that fell between sampled frames keeps one frame at its place.
                end = max(end, start + 1)
                clips.append(video[min(start, len(video) - 1) : end])
                captions.append(caption)
        positives.append([first_clip[video_id] + t for t in targets])
    return clips, captions, positives, first_clip


# Label of a question without target events: cross-entropy and accuracy leave it out.
NO_OFFSET_LABEL = -100


def offset_labels(targets: list[list[int]], max_offset: int) -> torch.Tensor:
    """Class of each question's answer offset (last target minus first, clamped to
    ``±max_offset``), as the relation head numbers them (class 0 is ``-max_offset``);
    ``NO_OFFSET_LABEL`` for a question without target events."""
    labels = [
        max(-max_offset, min(max_offset, t[-1] - t[0])) + max_offset if t else NO_OFFSET_LABEL
        for t in targets
    ]
    return torch.tensor(labels, dtype=torch.long)


def multi_positive_infonce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-log(sum_pos exp / sum_all exp)``; rows without positives skipped.

    With no positive in any row there is nothing to pull together: the loss is a zero that
    keeps the graph (so ``backward`` still works), not the NaN of an empty mean.
    """
    has_positive = positive.any(dim=1)
    if not has_positive.any():
        return logits.sum() * 0.0
    log_norm = torch.logsumexp(logits, dim=1)
    log_pos = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    return (log_norm - log_pos)[has_positive].mean()


class RetrieverPretraining(StageModule):
    """Contrastive pretraining of the clip and query encoders; see the module docstring.

    Args:
        clip_encoder / query_encoder: the dual encoder (injected from YAML).
        temperature: initial softmax temperature (learnable unless ``learn_temperature``
            is false).
        caption_weight / question_weight: weights of the two InfoNCE terms.
        offset_weight: weight of the relation head's cross-entropy (when it has one).
        optimizer / lr_scheduler: injected from YAML.
        max_nonfinite_steps: see ``StageModule`` (a NaN or infinite loss skips the step).
    """

    def __init__(
        self,
        clip_encoder: ClipEncoderBase | None = None,
        query_encoder: QueryEncoderBase | None = None,
        temperature: float = 0.07,
        learn_temperature: bool = True,
        caption_weight: float = 1.0,
        question_weight: float = 1.0,
        offset_weight: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        max_nonfinite_steps: int = 3,
    ):
        super().__init__(optimizer, lr_scheduler, max_nonfinite_steps)
        self.save_hyperparameters(
            ignore=["clip_encoder", "query_encoder", "optimizer", "lr_scheduler"]
        )
        self.clip_encoder = clip_encoder if clip_encoder is not None else ClipEncoder()
        self.query_encoder = query_encoder if query_encoder is not None else QueryEncoder()
        check_one_dual_encoder(self.clip_encoder, self.query_encoder)
        if self.clip_encoder.embed_dim != self.query_encoder.embed_dim:
            raise ValueError(
                f"clip_encoder embed_dim {self.clip_encoder.embed_dim} differs from "
                f"query_encoder embed_dim {self.query_encoder.embed_dim}"
            )
        self.log_scale = torch.nn.Parameter(
            torch.tensor(math.log(1 / temperature)), requires_grad=learn_temperature
        )
        self.val_metrics = torch.nn.ModuleDict(
            {
                # recall@k in the question-answering sense: a correct event in the top k
                # (an order question has two correct events; finding either counts).
                "recall_at_1": RetrievalHitRate(top_k=1),
                "recall_at_5": RetrievalHitRate(top_k=5),
                "mrr": RetrievalMRR(),
            }
        )
        # A metric object (not two counters) so several processes' hits are summed.
        self.val_offset_acc = MeanMetric()
        # Questions ranked and skipped as bad input, summed over processes likewise.
        self.val_counts = torch.nn.ModuleDict({"questions": SumMetric(), "skipped": SumMetric()})

    def scale(self) -> torch.Tensor:
        """Inverse temperature, clamped as in CLIP so training cannot blow up."""
        return self.log_scale.clamp(max=math.log(100)).exp()

    def contrastive_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Both InfoNCE terms of a batch and their weighted sum."""
        clips, captions, positives, _ = batch_clips(batch)
        if not clips:
            # Both losses contrast event clips; without event spans there is nothing to learn.
            raise ValueError(
                "retriever pretraining needs annotated event spans ('events' in the annotation"
                f" lines); the videos of this batch have none: {sorted(set(batch['video_id']))}"
            )
        clip_emb = self.clip_encoder(clips)
        caption_emb = self.query_encoder(captions)
        question_emb, offset_logits = self.query_encoder.embed_with_offsets(batch["problem"])
        scale = self.scale()
        same = torch.eye(len(clips), dtype=torch.bool, device=clip_emb.device)
        # Identical captions (two events alike) are positives of each other, not negatives.
        same = same | torch.tensor(
            [[a == b for b in captions] for a in captions], device=clip_emb.device
        )
        caption_logits = scale * clip_emb @ caption_emb.T
        caption_loss = 0.5 * (
            multi_positive_infonce(caption_logits, same)
            + multi_positive_infonce(caption_logits.T, same.T)
        )
        target = torch.zeros(len(positives), len(clips), dtype=torch.bool, device=clip_emb.device)
        for row, clip_ids in enumerate(positives):
            target[row, clip_ids] = True
        question_logits = scale * question_emb @ clip_emb.T
        question_loss = 0.5 * (
            multi_positive_infonce(question_logits, target)
            + multi_positive_infonce(question_logits.T, target.T)
        )
        hp = self.hparams
        loss = hp.caption_weight * caption_loss + hp.question_weight * question_loss
        losses = {"caption_loss": caption_loss, "question_loss": question_loss}
        labels = offset_labels(batch["target_events"], self.query_encoder.max_offset)
        if offset_logits is not None and (labels != NO_OFFSET_LABEL).any():
            losses["offset_loss"] = F.cross_entropy(
                offset_logits, labels.to(clip_emb.device), ignore_index=NO_OFFSET_LABEL
            )
            loss = loss + hp.offset_weight * losses["offset_loss"]
        return {"loss": loss, **losses}

    @names_memory_settings("train")
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if not self.has_samples(batch):
            return self.empty_batch_loss()
        losses = self.contrastive_loss(batch)
        if self.skip_nonfinite(losses["loss"], f"questions {batch['problem_id']}"):
            return self.skipped_step_loss()
        size = batch["batch_size"]
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=size)
        self.log("train/temperature", 1 / self.scale(), batch_size=size)
        return losses["loss"]

    @names_memory_settings("val")
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Rank the events of each question's own video; update recall@k and MRR."""
        self.val_counts["skipped"].update(float(batch.get("num_skipped") or 0))
        if not self.has_samples(batch):
            return
        self.val_counts["questions"].update(float(batch["batch_size"]))
        clips, _, _, first_clip = batch_clips(batch)
        clip_emb = self.clip_encoder(clips)
        question_emb, offset_logits = self.query_encoder.embed_with_offsets(batch["problem"])
        if offset_logits is not None:
            labels = offset_labels(batch["target_events"], self.query_encoder.max_offset)
            labels = labels.to(offset_logits.device)
            known = labels != NO_OFFSET_LABEL
            if known.any():
                hits = offset_logits.argmax(-1)[known] == labels[known]
                self.val_offset_acc.update(hits.float())
        # Question indexes unique across batches and processes: the metrics group the
        # candidates of one question by index when they are reduced over processes.
        world, rank = (self.trainer.world_size, self.global_rank) if self._trainer else (1, 0)
        offset = (batch_idx * world + rank) * 10_000
        for row, (video_id, spans, targets) in enumerate(
            zip(batch["video_id"], batch["event_spans"], batch["target_events"])
        ):
            own = [first_clip[video_id] + i for i in range(len(spans))]
            scores = question_emb[row] @ clip_emb[own].T
            relevant = torch.zeros(len(own), dtype=torch.bool, device=scores.device)
            relevant[targets] = True
            indexes = torch.full((len(own),), offset + row, device=scores.device)
            for metric in self.val_metrics.values():
                metric.update(scores, relevant, indexes=indexes)

    def on_validation_epoch_end(self) -> None:
        counts = {name: int(metric.compute()) for name, metric in self.val_counts.items()}
        for metric in self.val_counts.values():
            metric.reset()
        self.log_scored("val", counts["questions"], counts["skipped"])
        if counts["questions"] == 0:
            return  # the sanity check's batches were all bad: nothing to compute
        for name, metric in self.val_metrics.items():
            self.log(f"val/{name}", metric.compute())
            metric.reset()
        if self.val_offset_acc.update_count:
            self.log("val/offset_acc", self.val_offset_acc.compute())
        self.val_offset_acc.reset()
