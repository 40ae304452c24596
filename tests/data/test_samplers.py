"""Training order from (seed, epoch), shards per process, resumable position, unpadded eval."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from marc.data.samplers import EpochShuffleSampler, ResumableDataLoader, UnpaddedShardSampler


class Indices(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def loader(n=10, replicas=1, rank=0, seed=0, batch_size=2) -> ResumableDataLoader:
    dataset = Indices(n)
    sampler = EpochShuffleSampler(dataset, replicas, rank, seed=seed)
    return ResumableDataLoader(dataset, sampler=sampler, batch_size=batch_size)


def epoch(dl: ResumableDataLoader, number: int) -> list[list[int]]:
    dl.sampler.set_epoch(number)
    return [batch.tolist() for batch in dl]


def test_the_order_depends_on_seed_and_epoch_only():
    first, again = loader(seed=0), loader(seed=0)
    # Global torch RNG use in between must not matter (it did for RandomSampler).
    torch.rand(100)
    assert epoch(first, 1) == epoch(again, 1)
    assert epoch(first, 0) != epoch(first, 1)
    assert epoch(loader(seed=1), 0) != epoch(loader(seed=0), 0)


def test_each_process_draws_its_own_shard_and_together_they_cover_the_epoch():
    shards = [sum(epoch(loader(n=10, replicas=2, rank=r), 3), []) for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(10))


def test_a_restored_loader_continues_the_epoch_after_the_batches_handed_out():
    full = epoch(loader(), 2)
    interrupted = loader()
    interrupted.sampler.set_epoch(2)
    iterator = iter(interrupted)
    taken = [next(iterator).tolist() for _ in range(2)]
    state = interrupted.state_dict()
    assert state["epoch"] == 2 and state["batches"] == 2

    resumed = loader()
    resumed.load_state_dict(state)
    assert taken + epoch(resumed, 2) == full
    assert resumed.state_dict()["batches"] == len(full)
    # The next epoch starts from its beginning, in its own order.
    assert epoch(resumed, 3) == epoch(loader(), 3)


def test_a_restored_state_of_a_finished_epoch_does_not_shorten_the_next_one():
    done = loader()
    epoch(done, 0)
    resumed = loader()
    resumed.load_state_dict(done.state_dict())
    assert epoch(resumed, 1) == epoch(loader(), 1)


def test_resuming_under_two_processes_continues_each_shard():
    full = [epoch(loader(replicas=2, rank=r), 1) for r in (0, 1)]
    for rank in (0, 1):
        first = loader(replicas=2, rank=rank)
        first.sampler.set_epoch(1)
        taken = next(iter(first)).tolist()
        resumed = loader(replicas=2, rank=rank)
        resumed.load_state_dict(first.state_dict())
        assert [taken, *epoch(resumed, 1)] == full[rank]


def test_the_length_stays_the_whole_shard_so_lightning_counts_batches_the_same():
    resumed = loader(n=10)
    resumed.load_state_dict({"epoch": 0, "batches": 3, "batch_size": 2, "num_replicas": 1})
    assert len(resumed) == 5
    assert len(epoch(resumed, 0)) == 2


@pytest.mark.parametrize("n", [3, 4, 7])
def test_unpadded_eval_shards_count_every_sample_once(n):
    shards = [list(UnpaddedShardSampler(Indices(n), 2, r)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(n))
    assert [len(UnpaddedShardSampler(Indices(n), 2, r)) for r in (0, 1)] == [len(s) for s in shards]


def test_the_resumable_loader_needs_its_sampler():
    with pytest.raises(TypeError, match="EpochShuffleSampler"):
        ResumableDataLoader(Indices(4), sampler=None, batch_size=2)
