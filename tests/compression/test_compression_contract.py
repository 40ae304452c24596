"""Behaviour every compressor shares: budgets, grids, kept fractions, errors, determinism."""

import inspect

import pytest
import torch

import marc.compression as mc
from marc.compression import Budget, TokenCompressor

FACTORIES = {
    "Identity": mc.Identity,
    "UniformFrames": mc.UniformFrames,
    "TemporalMeanPool": mc.TemporalMeanPool,
    "ToMe": mc.ToMe,
    "RandomDrop": mc.RandomDrop,
    "MemoryAwareMerge": mc.MemoryAwareMerge,
    "MemoryAwareMergeW2R1": lambda: mc.MemoryAwareMerge(window=2, local_ratio=1.0),
    "MemoryAwareMergeSizeWeighted": lambda: mc.MemoryAwareMerge(merge="size_weighted"),
}
COMPRESSING = [name for name in FACTORIES if name != "Identity"]
GRIDS = [(1, 1, 1), (1, 2, 3), (2, 2, 2), (5, 2, 2), (8, 3, 3), (13, 2, 4), (32, 4, 4)]
BUDGETS = [
    Budget(frames=1),
    Budget(frames=2),
    Budget(frames=7),
    Budget(frames=1000),
    Budget(tokens=1),
    Budget(tokens=10),
    Budget(tokens=37),
    Budget(tokens=10**6),
]


def video(grid, dim=8, seed=0, dtype=torch.float32):
    """Random tokens [T, H*W, D] for ``grid``."""
    t, h, w = grid
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(t, h * w, dim, generator=gen).to(dtype)


@pytest.mark.parametrize("name", COMPRESSING)
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("budget", BUDGETS, ids=str)
def test_budget_met_exactly(name, grid, budget):
    t, h, w = grid
    out = FACTORIES[name]()(video(grid), grid, budget)
    groups = budget.max_groups(grid)
    assert out.grid == (groups, h, w)
    assert out.tokens.shape == (groups, h * w, 8)
    assert out.num_tokens == groups * h * w
    assert out.num_tokens <= max(budget.max_tokens(grid), h * w)
    assert out.kept_fraction == pytest.approx(groups / t)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("budget", BUDGETS[:5], ids=str)
def test_identity_keeps_everything(grid, budget):
    tokens = video(grid)
    out = mc.Identity()(tokens, grid, budget)
    assert out.tokens is tokens
    assert out.grid == grid and out.kept_fraction == 1.0


@pytest.mark.parametrize("name", COMPRESSING)
def test_budget_at_least_t_is_identity(name):
    grid = (6, 2, 3)
    tokens = video(grid)
    for budget in (Budget(frames=6), Budget(frames=9), Budget(tokens=36), Budget(tokens=999)):
        out = FACTORIES[name]()(tokens, grid, budget)
        assert out.grid == grid and out.kept_fraction == 1.0
        assert torch.equal(out.tokens, tokens)


@pytest.mark.parametrize("name", FACTORIES)
def test_single_group(name):
    tokens = video((1, 3, 3))
    out = FACTORIES[name]()(tokens, (1, 3, 3), Budget(frames=1))
    assert out.grid == (1, 3, 3) and out.kept_fraction == 1.0
    assert torch.equal(out.tokens, tokens)


@pytest.mark.parametrize("name", COMPRESSING)
def test_repeated_groups_compress_to_that_group(name):
    grid = (12, 2, 3)
    group = video((1, 2, 3), dim=16, seed=3)[0]
    tokens = group.expand(12, -1, -1).clone()
    out = FACTORIES[name]()(tokens, grid, Budget(frames=5))
    assert out.grid == (5, 2, 3)
    expected = group.expand(5, -1, -1)
    if name == "TemporalMeanPool":  # a plain mean of equal values may round by one ulp
        torch.testing.assert_close(out.tokens, expected, rtol=1e-6, atol=1e-7)
    else:
        assert torch.equal(out.tokens, expected)


@pytest.mark.parametrize("name", FACTORIES)
def test_no_hidden_state(name):
    grid = (16, 2, 2)
    videos = [video(grid, seed=s) for s in range(4)]
    budget = Budget(frames=3)
    alone = [FACTORIES[name]()(v, grid, budget) for v in videos]
    shared = FACTORIES[name]()
    looped = [shared(v, grid, budget) for v in videos]
    again = shared(videos[0], grid, budget)
    for a, b in zip(alone, looped):
        assert torch.equal(a.tokens, b.tokens) and a.grid == b.grid
    assert torch.equal(again.tokens, alone[0].tokens)


@pytest.mark.parametrize("name", FACTORIES)
def test_other_videos_do_not_change_a_result(name):
    budget = Budget(tokens=12)
    compressor = FACTORIES[name]()
    first = compressor(video((10, 2, 3), seed=7), (10, 2, 3), budget)
    compressor(video((20, 3, 3), seed=8), (20, 3, 3), Budget(frames=1))
    compressor(video((5, 1, 1), seed=9, dtype=torch.bfloat16), (5, 1, 1), budget)
    second = compressor(video((10, 2, 3), seed=7), (10, 2, 3), budget)
    assert torch.equal(first.tokens, second.tokens)


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_dtypes(name, dtype):
    grid = (9, 2, 2)
    out = FACTORIES[name]()(video(grid, dtype=dtype), grid, Budget(frames=2))
    assert out.tokens.dtype == dtype
    assert torch.isfinite(out.tokens.float()).all()


@pytest.mark.parametrize("name", FACTORIES)
def test_gradients_flow(name):
    grid = (9, 2, 2)
    tokens = video(grid).requires_grad_(True)
    out = FACTORIES[name]()(tokens, grid, Budget(frames=2))
    out.tokens.sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0


@pytest.mark.parametrize("name", FACTORIES)
def test_bad_inputs_raise_value_error(name):
    compressor = FACTORIES[name]()
    tokens = video((4, 2, 2))
    budget = Budget(frames=1)
    bad = [
        (tokens[0], (4, 2, 2), budget),  # 2-D
        (tokens, (5, 2, 2), budget),  # wrong T
        (tokens, (4, 2, 3), budget),  # wrong H*W
        (tokens, (4, 2), budget),  # grid of two sizes
        (tokens, (0, 2, 2), budget),  # empty grid
        (tokens, (4.0, 2, 2), budget),  # non-integer size
        (tokens.long(), (4, 2, 2), budget),  # integer tokens
        (tokens, (4, 2, 2), 1),  # budget not a Budget
    ]
    for args in bad:
        with pytest.raises(ValueError):
            compressor(*args)


def test_budget_validation():
    with pytest.raises(ValueError):
        Budget()
    with pytest.raises(ValueError):
        Budget(frames=1, tokens=4)
    with pytest.raises(ValueError):
        Budget(frames=0)


@pytest.mark.parametrize("name", FACTORIES)
def test_parameter_free_modules_with_simple_defaults(name):
    compressor = FACTORIES[name]()
    assert isinstance(compressor, TokenCompressor)
    assert list(compressor.parameters()) == [] and list(compressor.buffers()) == []
    for param in list(inspect.signature(type(compressor).__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):  # nn.Module's own __init__
            continue
        assert param.default is not inspect.Parameter.empty
        assert param.annotation in (int, float, str, "int", "float", "str")


def test_instantiable_from_class_path():
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--compressor", type=TokenCompressor)
    for name, init_args in [
        ("MemoryAwareMerge", {"window": 2, "local_ratio": 0.5, "merge": "size_weighted"}),
        ("UniformFrames", {}),
        ("ToMe", {"merge_ratio": 1.0}),
        ("RandomDrop", {"seed": 3}),
    ]:
        spec = {"class_path": f"marc.compression.{name}", "init_args": init_args}
        cfg = parser.parse_object({"compressor": spec})
        compressor = parser.instantiate_classes(cfg).compressor
        assert type(compressor).__name__ == name
        for key, value in init_args.items():
            assert getattr(compressor, key) == value


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ([(0, 3), (2, 6)], r"segment 1 \(2, 6\) overlaps"),
        ([(0, 3), (4, 6)], r"segment 1 \(4, 6\) leaves a gap"),
        ([(0, 3), (3, 3), (3, 6)], r"segment 1 \(3, 3\) is empty"),
        ([(0, 3), (3, 7)], r"segment 1 \(3, 7\) ends after"),
        ([(0, 3)], r"cover \[0, 3\) but the video has 6"),
        ([], "segments is empty"),
        ([(0, "x")], "segment 0 must be a"),
    ],
)
@pytest.mark.parametrize("name", FACTORIES)
def test_segments_that_do_not_tile_the_video_name_the_span(name, segments, message):
    grid = (6, 2, 2)
    with pytest.raises(ValueError, match=message):
        FACTORIES[name]()(video(grid), grid, Budget(frames=2), segments=segments)


@pytest.mark.parametrize("name", FACTORIES)
def test_every_compressor_accepts_segments(name):
    grid = (6, 2, 2)
    out = FACTORIES[name]()(video(grid), grid, Budget(frames=2), segments=[(0, 2), (2, 6)])
    assert out.num_tokens <= (6 if name == "Identity" else 2) * 4
