"""Samplers and the training loader that make a run resumable and shard it across processes.

- :class:`EpochShuffleSampler`: the training order is a permutation drawn from ``(seed,
  epoch)`` alone, so an epoch has the same order whether the run was interrupted or not;
  each of ``num_replicas`` processes draws its own shard of it (``DistributedSampler``'s
  padding and interleaving), and :meth:`EpochShuffleSampler.resume` starts an epoch after
  the samples that were already drawn.
- :class:`ResumableDataLoader`: a ``DataLoader`` that counts the batches it has handed out
  in the current epoch and has ``state_dict`` / ``load_state_dict``. Lightning stores the
  state of such a loader in its checkpoints (``loops.fit_loop.state_dict.combined_loader``)
  and gives it back on ``--ckpt_path``, so a run killed mid-epoch continues with the batch
  after the last checkpointed one, in the same epoch's order.
- :class:`UnpaddedShardSampler`: evaluation shards that never repeat a sample, so an
  accuracy reduced over processes counts every question once (``DistributedSampler`` pads
  the last shard with samples from the start).

Both samplers are ``DistributedSampler`` subclasses, so Lightning leaves them in place
instead of injecting its own (``use_distributed_sampler``).

Why not Lightning's default: a ``DataLoader(shuffle=True)`` has a ``RandomSampler`` that
draws a new seed from torch's global generator at every epoch. Lightning does not store
that generator in checkpoints and ``seed_everything`` resets it when a run starts, so a run
resumed in epoch 2 draws epoch 1's order again and, lacking a loader state, starts the epoch
from its first batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

log = logging.getLogger(__name__)


class EpochShuffleSampler(DistributedSampler):
    """This process's shard of a permutation drawn from ``(seed, epoch)``; resumable.

    Args:
        dataset: the dataset (only its length is used).
        num_replicas / rank: the number of processes and this one's global rank.
        shuffle: permute each epoch (False keeps dataset order, still sharded).
        seed: seed of the permutations (the same on every process).
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self._resume_epoch: int | None = None
        self._resume_start = 0  # positions of the padded permutation already drawn

    def global_order(self) -> list[int]:
        """The epoch's order over all processes, padded to a multiple of ``num_replicas``."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.dataset), generator=generator).tolist()
        else:
            order = list(range(len(self.dataset)))
        padding = self.total_size - len(order)
        if padding > 0:
            order += (order * math.ceil(padding / len(order)))[:padding]
        return order

    def resume(self, epoch: int, start: int) -> None:
        """Begin ``epoch`` (the next time it is iterated) after its first ``start`` positions."""
        self._resume_epoch, self._resume_start = epoch, start

    def __iter__(self) -> Iterator[int]:
        start = 0
        if self._resume_epoch == self.epoch:
            # Only the first pass over the resumed epoch is shortened.
            start, self._resume_epoch = self._resume_start, None
        # Interleaved like DistributedSampler, so an uninterrupted shard is the same as its.
        shard = self.global_order()[start:][self.rank :: self.num_replicas]
        return iter(shard)


class UnpaddedShardSampler(DistributedSampler):
    """Every ``num_replicas``-th sample from ``rank`` in dataset order: shards never overlap.

    Shards may differ in length by one; evaluation does not synchronise per batch, so that
    is safe, and metrics reduced over processes count each sample exactly once.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))


class ResumableDataLoader(DataLoader):
    """A training loader whose position in the epoch is saved and restored by Lightning.

    Its sampler must be an :class:`EpochShuffleSampler`. The state is the epoch and the
    number of batches handed out in it; restoring it makes the next pass over that epoch
    skip those batches (without decoding them). Batches are counted as the consumer takes
    them, so worker processes reading ahead do not move the position.
    """

    def __init__(self, dataset: Dataset, *, sampler: EpochShuffleSampler, **kwargs: Any):
        if not isinstance(sampler, EpochShuffleSampler):
            raise TypeError(f"ResumableDataLoader needs an EpochShuffleSampler, got {sampler!r}")
        # Its own generator: a DataLoader draws its workers' base seed from the global one
        # each epoch, which would put a resumed run's global generator one draw off.
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._batches_done = 0
        self._epoch_of_count = sampler.epoch

    def __iter__(self) -> Iterator[Any]:
        sampler = self.sampler
        resumed = sampler._resume_epoch == sampler.epoch
        skipped = sampler._resume_start // self._global_batch() if resumed else 0
        self._epoch_of_count, self._batches_done = sampler.epoch, skipped
        self.generator.manual_seed(sampler.seed + sampler.epoch)
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def _global_batch(self) -> int:
        """Sampler positions one batch of every process takes."""
        return self.batch_size * self.sampler.num_replicas

    def state_dict(self) -> dict[str, int]:
        """Where the current epoch stands: its number and the batches handed out in it."""
        return {
            "epoch": self._epoch_of_count,
            "batches": self._batches_done,
            "batch_size": self.batch_size,
            "num_replicas": self.sampler.num_replicas,
            "seed": self.sampler.seed,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue ``state["epoch"]`` after the batches it had handed out."""
        if state.get("seed", self.sampler.seed) != self.sampler.seed:
            log.warning(
                "resuming with data seed %s, the checkpoint's was %s: the epoch's order differs",
                self.sampler.seed,
                state["seed"],
            )
        # In positions of the global order, so a different number of processes or batch
        # size still continues after the samples already drawn (exact when both match).
        start = state["batches"] * state["batch_size"] * state["num_replicas"]
        self.sampler.resume(state["epoch"], start)
        self._epoch_of_count, self._batches_done = state["epoch"], state["batches"]
