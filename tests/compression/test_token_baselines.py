"""What every token-level baseline shares: exact budgets, positions, dtypes, determinism."""

import inspect

import pytest
import torch

import marc.compression as mc
from marc.compression import Budget, TokenCompressor

FACTORIES = {
    "VidCom2": mc.VidCom2,
    "VidCom2PerSegment": lambda: mc.VidCom2(per_segment=True),
    "FastVID": mc.FastVID,
    "FastVIDNoDySeg": lambda: mc.FastVID(dyseg=False, saliency="mean_query"),
    "VisionZip": mc.VisionZip,
    "VisionZipVideo": lambda: mc.VisionZip(scope="video", saliency="norm"),
    "DyCoke": mc.DyCoke,
    "TokenToMe": mc.TokenToMe,
    "TokenToMeLocal": lambda: mc.TokenToMe(merge_ratio=0.5, global_from=1),
}
# Methods whose every output token is an input token, unmodified, at its own position.
PRUNING = ["VidCom2", "VidCom2PerSegment", "DyCoke"]
GRIDS = [(1, 1, 1), (1, 1, 2), (1, 3, 3), (2, 1, 1), (3, 2, 2), (6, 2, 3), (9, 3, 4), (32, 2, 2)]


def video(grid, dim=8, seed=0, dtype=torch.float32):
    """Random tokens [T, H*W, D] for ``grid``."""
    t, h, w = grid
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(t, h * w, dim, generator=gen).to(dtype)


def budgets(grid):
    """Token counts below the video's: 1, 2, one frame, just below everything, and more."""
    t, h, w = grid
    total = t * h * w
    counts = {1, 2, h * w, total // 3, total // 2, total - 2, total - 1}
    return sorted(n for n in counts if 1 <= n < total)


def halves(t):
    """Two segments (or None for a single group)."""
    return [(0, t // 2), (t // 2, t)] if t > 1 else None


def check_token_level(out, tokens, grid, count):
    """The output has exactly ``count`` tokens at distinct, sorted positions inside ``grid``."""
    t, h, w = grid
    assert out.is_token_level
    assert out.grid == grid
    assert out.num_tokens == count
    assert out.tokens.shape == (count, tokens.shape[-1])
    assert out.positions.shape == (count, 3) and out.positions.dtype == torch.int64
    assert (out.positions >= 0).all() and (out.positions < torch.tensor(grid)).all()
    flat = (out.positions[:, 0] * h + out.positions[:, 1]) * w + out.positions[:, 2]
    assert flat.unique().numel() == count, "positions must be distinct"
    assert (flat[1:] > flat[:-1]).all(), "tokens come in (t, h, w) order"
    assert out.kept_fraction == pytest.approx(count / (t * h * w))
    return flat


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("grid", GRIDS)
def test_exact_token_budget(name, grid):
    tokens = video(grid)
    compressor = FACTORIES[name]()
    for count in budgets(grid):
        for segments in (None, halves(grid[0])):
            out = compressor(tokens, grid, Budget(tokens=count), segments=segments)
            flat = check_token_level(out, tokens, grid, count)
            if name in PRUNING:
                assert torch.equal(out.tokens, tokens.flatten(0, 1)[flat])


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("frames", [1, 2, 5])
def test_frame_budget_keeps_k_frames_of_tokens(name, frames):
    grid = (8, 2, 3)
    out = FACTORIES[name]()(video(grid), grid, Budget(frames=frames))
    check_token_level(out, video(grid), grid, frames * 6)


@pytest.mark.parametrize("name", FACTORIES)
def test_a_budget_that_holds_the_video_returns_it_unchanged(name):
    grid = (5, 2, 2)
    tokens = video(grid)
    for budget in (Budget(tokens=20), Budget(tokens=500), Budget(frames=5), Budget(frames=9)):
        out = FACTORIES[name]()(tokens, grid, budget, segments=[(0, 2), (2, 5)])
        assert not out.is_token_level and out.grid == grid and out.kept_fraction == 1.0
        assert out.tokens is tokens


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_dtype_is_preserved(name, dtype):
    grid = (6, 3, 3)
    tokens = video(grid, dim=16, dtype=dtype)
    out = FACTORIES[name]()(tokens, grid, Budget(tokens=13), segments=[(0, 4), (4, 6)])
    assert out.tokens.dtype == dtype
    assert torch.isfinite(out.tokens.float()).all()
    check_token_level(out, tokens, grid, 13)


@pytest.mark.parametrize("name", FACTORIES)
def test_bf16_scores_like_float32(name):
    """Scores are computed in float32: a bf16 video keeps the tokens its float32 copy keeps."""
    grid = (6, 3, 3)
    tokens = video(grid, dim=16).to(torch.bfloat16)
    compressor = FACTORIES[name]()
    low = compressor(tokens, grid, Budget(tokens=11))
    high = compressor(tokens.float(), grid, Budget(tokens=11))
    assert torch.equal(low.positions, high.positions)
    torch.testing.assert_close(low.tokens, high.tokens.to(torch.bfloat16))


@pytest.mark.parametrize("name", FACTORIES)
def test_deterministic_without_global_rng(name):
    grid = (10, 3, 3)
    tokens = video(grid, dim=12, seed=4)
    budget = Budget(tokens=17)
    torch.manual_seed(1)
    first = FACTORIES[name]()(tokens, grid, budget, segments=[(0, 3), (3, 10)])
    shared = FACTORIES[name]()
    shared(video((4, 2, 2), seed=5), (4, 2, 2), Budget(tokens=3))
    torch.manual_seed(2)
    second = shared(tokens, grid, budget, segments=[(0, 3), (3, 10)])
    assert torch.equal(first.tokens, second.tokens)
    assert torch.equal(first.positions, second.positions)


@pytest.mark.parametrize("name", FACTORIES)
def test_ties_are_broken_the_same_way(name):
    """A video of one repeated token: every choice is a tie, and the result is still fixed."""
    grid = (8, 2, 2)
    tokens = video((1, 1, 1), dim=6)[0].expand(8, 4, 6).clone()
    outs = [FACTORIES[name]()(tokens, grid, Budget(tokens=5)) for _ in range(2)]
    check_token_level(outs[0], tokens, grid, 5)
    assert torch.equal(outs[0].positions, outs[1].positions)
    torch.testing.assert_close(outs[0].tokens, tokens[0, :1].expand(5, 6))


@pytest.mark.parametrize("name", FACTORIES)
def test_gradients_reach_the_tokens(name):
    grid = (6, 2, 2)
    tokens = video(grid).requires_grad_(True)
    out = FACTORIES[name]()(tokens, grid, Budget(tokens=7))
    out.tokens.sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0


@pytest.mark.parametrize("name", FACTORIES)
def test_segments_are_checked(name):
    grid = (6, 2, 2)
    with pytest.raises(ValueError, match="overlaps"):
        FACTORIES[name]()(video(grid), grid, Budget(tokens=5), segments=[(0, 3), (2, 6)])


@pytest.mark.parametrize("name", FACTORIES)
def test_parameter_free_and_configurable(name):
    compressor = FACTORIES[name]()
    assert isinstance(compressor, TokenCompressor)
    assert list(compressor.parameters()) == [] and list(compressor.buffers()) == []
    assert type(compressor).__name__ in mc.__all__
    for param in list(inspect.signature(type(compressor).__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):  # nn.Module's own __init__
            continue
        assert param.default is not inspect.Parameter.empty
        assert param.annotation in ("int", "float", "str", "bool")
        assert getattr(compressor, param.name) is not None
    assert type(compressor).__name__ in repr(compressor)


def test_instantiable_from_class_path():
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--compressor", type=TokenCompressor)
    for name, init_args in [
        ("VidCom2", {"tau": 0.02, "per_segment": True}),
        ("FastVID", {"min_segments": 4, "saliency": "norm", "dyseg": False}),
        ("VisionZip", {"contextual_ratio": 0.25, "scope": "video"}),
        ("DyCoke", {}),
        ("TokenToMe", {"merge_ratio": 0.5, "global_from": 1024}),
    ]:
        spec = {"class_path": f"marc.compression.{name}", "init_args": init_args}
        compressor = parser.instantiate_classes(parser.parse_object({"compressor": spec}))
        compressor = compressor.compressor
        assert type(compressor).__name__ == name
        for key, value in init_args.items():
            assert getattr(compressor, key) == value


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: mc.VidCom2(tau=0), "tau"),
        (lambda: mc.VidCom2(channel_ratio=0), "channel_ratio"),
        (lambda: mc.FastVID(min_segments=0), "min_segments"),
        (lambda: mc.FastVID(context_share=1.5), "context_share"),
        (lambda: mc.FastVID(saliency="cls"), "saliency"),
        (lambda: mc.VisionZip(contextual_ratio=1.0), "contextual_ratio"),
        (lambda: mc.VisionZip(scope="clip"), "scope"),
        (lambda: mc.VisionZip(context_merge="max"), "context_merge"),
        (lambda: mc.TokenToMe(merge_ratio=0), "merge_ratio"),
        (lambda: mc.TokenToMe(global_from=0), "global_from"),
    ],
)
def test_bad_settings_raise(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
