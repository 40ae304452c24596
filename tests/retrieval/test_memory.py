import json

import numpy as np
import pytest
import torch

from marc.retrieval.memory import SearchResult, VideoMemory, VideoMemoryError


def _data(n=100, dim=16, videos=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(n, dim, generator=generator)
    metadata = [
        {"video_id": f"v{i % videos}", "clip_index": i, "span": (i, i + 1)} for i in range(n)
    ]
    return vectors, metadata


def _ids(results):
    return [[r.id for r in row] for row in results]


@pytest.fixture
def queries():
    return torch.randn(8, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("backend", ["hnsw", "exact"])
def test_add_search_format(backend, queries):
    memory = VideoMemory(16, backend=backend)
    vectors, metadata = _data()
    assert memory.add(vectors[:60], metadata[:60]) == list(range(60))
    assert memory.add(vectors[60:].numpy(), metadata[60:]) == list(range(60, 100))
    assert len(memory) == 100
    results = memory.search(queries, k=5)
    assert len(results) == 8 and all(len(row) == 5 for row in results)
    best = results[0][0]
    assert isinstance(best, SearchResult) and best.metadata["span"] == [best.id, best.id + 1]
    assert all(a.score >= b.score for row in results for a, b in zip(row, row[1:]))
    # Cosine scores: the best item of a stored vector is itself with score 1.
    self_hit = memory.search(vectors[7], k=1)[0][0]
    assert self_hit.id == 7 and self_hit.score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("space", ["cosine", "ip", "l2"])
def test_exact_and_hnsw_agree_on_small_data(space, queries):
    vectors, metadata = _data()
    hnsw, exact = VideoMemory(16, space=space), VideoMemory(16, backend="exact", space=space)
    hnsw.add(vectors, metadata)
    exact.add(vectors, metadata)
    got, want = hnsw.search(queries, k=10), exact.search(queries, k=10)
    assert _ids(got) == _ids(want)
    scores = np.array([[r.score for r in row] for row in got])
    assert np.allclose(scores, [[r.score for r in row] for row in want], atol=1e-4)


@pytest.mark.parametrize("backend", ["hnsw", "exact"])
def test_filter_by_video(backend, queries):
    vectors, metadata = _data()
    memory = VideoMemory(16, backend=backend)
    memory.add(vectors, metadata)
    results = memory.search(queries, k=50, video_id="v1")
    assert all(len(row) == 33 for row in results)
    assert all(r.metadata["video_id"] == "v1" for row in results for r in row)
    assert memory.search(queries, k=3, video_id="missing") == [[]] * 8


@pytest.mark.parametrize("backend", ["hnsw", "exact"])
def test_growth_past_initial_capacity(backend, queries):
    vectors, metadata = _data()
    memory = VideoMemory(16, backend=backend, initial_capacity=8)
    for i in range(100):
        memory.add(vectors[i : i + 1], metadata[i : i + 1])
    assert len(memory) == 100 and memory.capacity == 128
    exact = VideoMemory(16, backend="exact")
    exact.add(vectors, metadata)
    assert _ids(memory.search(queries, k=10)) == _ids(exact.search(queries, k=10))


@pytest.mark.parametrize("backend", ["hnsw", "exact"])
def test_k_larger_than_memory(backend, queries):
    memory = VideoMemory(16, backend=backend)
    assert memory.search(queries, k=3) == [[]] * 8
    vectors, metadata = _data(n=5)
    memory.add(vectors, metadata)
    assert [len(row) for row in memory.search(queries, k=50)] == [5] * 8
    assert [len(row) for row in memory.search(queries, k=50, video_id="v0")] == [2] * 8


@pytest.mark.parametrize("backend", ["hnsw", "exact"])
def test_bad_input_errors(backend):
    memory = VideoMemory(16, backend=backend)
    with pytest.raises(VideoMemoryError, match=r"shape \[N, 16\].*\(3, 8\)"):
        memory.add(torch.zeros(3, 8), [{"video_id": "a"}] * 3)
    with pytest.raises(VideoMemoryError, match="dimension|shape"):
        memory.search(torch.zeros(2, 15), k=1)
    with pytest.raises(VideoMemoryError, match=r"metadata\[1\].*video_id"):
        memory.add(torch.zeros(2, 16), [{"video_id": "a"}, {"clip": 1}])
    with pytest.raises(VideoMemoryError, match="2 embeddings but 1 metadata"):
        memory.add(torch.zeros(2, 16), [{"video_id": "a"}])
    with pytest.raises(VideoMemoryError, match="JSON"):
        memory.add(torch.zeros(1, 16), [{"video_id": "a", "x": object()}])
    assert len(memory) == 0


@pytest.mark.parametrize("backend", ["hnsw", "exact"])
def test_save_load_round_trip(backend, tmp_path, queries):
    vectors, metadata = _data()
    memory = VideoMemory(16, backend=backend, initial_capacity=8)
    memory.add(vectors, metadata)
    memory.save(tmp_path / "memory")
    memory.save(tmp_path / "memory")  # overwriting an existing memory is fine
    # No leftovers: the memory and its lock file (see marc.io).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".memory.lock", "memory"]
    manifest = json.loads((tmp_path / "memory" / "manifest.json").read_text())
    assert manifest["dim"] == 16 and manifest["count"] == 100 and manifest["backend"] == backend
    loaded = VideoMemory.load(tmp_path / "memory")
    assert len(loaded) == 100 and loaded.space == memory.space
    assert memory.search(queries, k=7) == loaded.search(queries, k=7)
    assert memory.search(queries, k=7, video_id="v2") == loaded.search(queries, k=7, video_id="v2")
    loaded.add(vectors[:3], metadata[:3])  # a loaded memory keeps growing
    assert len(loaded) == 103


def test_save_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("work")
    with pytest.raises(VideoMemoryError, match="refusing"):
        VideoMemory(4).save(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "work"


@pytest.mark.parametrize("backend", ["hnsw", "exact"])
def test_missing_and_corrupt_files(backend, tmp_path):
    vectors, metadata = _data(n=20)
    memory = VideoMemory(16, backend=backend)
    memory.add(vectors, metadata)
    vector_file = "index.bin" if backend == "hnsw" else "embeddings.npy"

    memory.save(tmp_path / "m")
    (tmp_path / "m" / vector_file).unlink()
    with pytest.raises(VideoMemoryError, match=f"missing memory file: .*{vector_file}"):
        VideoMemory.load(tmp_path / "m")

    memory.save(tmp_path / "m")
    path = tmp_path / "m" / vector_file
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(VideoMemoryError, match=f"{vector_file}: corrupt or truncated"):
        VideoMemory.load(tmp_path / "m")

    memory.save(tmp_path / "m")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VideoMemoryError, match=f"{vector_file}: corrupt"):
        VideoMemory.load(tmp_path / "m")

    memory.save(tmp_path / "m")
    (tmp_path / "m" / "manifest.json").write_text("{not json")
    with pytest.raises(VideoMemoryError, match="manifest.json: not valid JSON"):
        VideoMemory.load(tmp_path / "m")

    memory.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    del manifest["dim"]
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VideoMemoryError, match="missing field 'dim'"):
        VideoMemory.load(tmp_path / "m")

    (tmp_path / "m" / "manifest.json").unlink()
    with pytest.raises(VideoMemoryError, match="missing memory file: .*manifest.json"):
        VideoMemory.load(tmp_path / "m")

    with pytest.raises(VideoMemoryError, match="not found"):
        VideoMemory.load(tmp_path / "nowhere")


def test_hnsw_is_deterministic(queries):
    vectors, metadata = _data(n=300)
    runs = []
    for _ in range(2):
        memory = VideoMemory(16, M=8, ef_construction=50, ef=10, initial_capacity=16, seed=3)
        memory.add(vectors, metadata)
        runs.append(memory.search(queries, k=10))
    assert runs[0] == runs[1]


class _FlakyIndex:
    """An hnswlib index whose filtered search fails above k=2, as hnswlib does when the graph
    walk finds too few matching items."""

    def __init__(self, index):
        self.index = index
        self.ef_seen = []

    def knn_query(self, data, k=1, num_threads=-1, filter=None):
        self.ef_seen.append(self.index.ef)
        if filter is not None and k > 2:
            raise RuntimeError("Cannot return the results in a contiguous 2D array.")
        return self.index.knn_query(data, k=k, num_threads=num_threads, filter=filter)

    def __getattr__(self, name):
        return getattr(self.index, name)


def test_filtered_hnsw_widens_ef_then_lowers_k(queries):
    vectors, metadata = _data()
    memory = VideoMemory(16, ef=10)
    memory.add(vectors, metadata)
    flaky = _FlakyIndex(memory._index)
    memory._index = flaky
    results = memory.search(queries, k=5, video_id="v1")
    assert [len(row) for row in results] == [2] * 8
    assert all(r.metadata["video_id"] == "v1" for row in results for r in row)
    assert flaky.ef_seen[:2] == [10, 100] and memory._index.index.ef == 10
