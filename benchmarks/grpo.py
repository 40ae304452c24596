"""Time grpo_loss forward + backward against a naive per-sample Python loop, on CPU.

Both compute the same loss (checked first, loss and gradient); the two are timed in
interleaved rounds until their ratio is stable (``benchmarks/timing.py``), and the speedup
is the ratio of medians with the quartiles of the per-round ratios. The last printed line
is one JSON object.

Run as ``python benchmarks/grpo.py [--batch 64 --length 256]``.
"""

from __future__ import annotations

import argparse
import json

import torch
from timing import CLOCKS, default_clock, interleaved

from marc.rl.grpo import grpo_loss, kl_k3


def naive_grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.04,
    epsilon: float = 0.2,
) -> torch.Tensor:
    """The "grpo" loss one completion at a time, as a first implementation would write it."""
    sequence_losses = []
    for i in range(logprobs.shape[0]):
        keep = mask[i].bool()
        logp, old, ref = logprobs[i][keep], old_logprobs[i][keep], ref_logprobs[i][keep]
        ratio = torch.exp(logp - old)
        surrogate = torch.min(
            ratio * advantages[i], ratio.clamp(1 - epsilon, 1 + epsilon) * advantages[i]
        )
        per_token = -surrogate + beta * kl_k3(logp, ref)
        sequence_losses.append(per_token.mean() if per_token.numel() else per_token.sum())
    return torch.stack(sequence_losses).mean()


def make_batch(batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random log-probs near each other, random advantages and ragged completion masks."""
    generator = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(batch, length, generator=generator) * 5
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    return {
        "logprobs": logprobs,
        "old_logprobs": logprobs + 0.3 * torch.randn(batch, length, generator=generator),
        "ref_logprobs": logprobs + 0.3 * torch.randn(batch, length, generator=generator),
        "advantages": torch.randn(batch, generator=generator),
        "mask": (torch.arange(length) < lengths[:, None]).long(),
    }


def forward_backward(loss_fn, inputs: dict[str, torch.Tensor]) -> tuple[float, torch.Tensor]:
    """Loss value and gradient with respect to the log-probs."""
    logprobs = inputs["logprobs"].clone().requires_grad_()
    loss = loss_fn({**inputs, "logprobs": logprobs})
    loss.backward()
    return loss.item(), logprobs.grad


def main() -> None:
    """Check agreement, time both, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--min-rounds", type=int, default=10)
    parser.add_argument("--max-rounds", type=int, default=60)
    parser.add_argument("--target-spread", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default=None)
    parser.add_argument("--quick", action="store_true", help="batch 16, length 64, fewer rounds")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.length, args.min_rounds, args.max_rounds = 16, 64, 5, 20
    torch.set_num_threads(args.threads)
    clock = args.clock or default_clock("cpu", args.threads)

    inputs = make_batch(args.batch, args.length)

    def vectorised(x: dict[str, torch.Tensor]) -> torch.Tensor:
        return grpo_loss(**x, beta=0.04, loss_type="grpo").loss

    def naive(x: dict[str, torch.Tensor]) -> torch.Tensor:
        return naive_grpo_loss(**x, beta=0.04)

    loss_v, grad_v = forward_backward(vectorised, inputs)
    loss_n, grad_n = forward_backward(naive, inputs)
    loss_diff = abs(loss_v - loss_n)
    grad_diff = float((grad_v - grad_n).abs().max())
    if loss_diff > 1e-5 or grad_diff > 1e-6:
        raise SystemExit(f"implementations disagree: loss diff {loss_diff}, grad diff {grad_diff}")

    timings = interleaved(
        {
            "vectorised": lambda: forward_backward(vectorised, inputs),
            "naive": lambda: forward_backward(naive, inputs),
        },
        [("naive", "vectorised")],
        min_rounds=args.min_rounds,
        max_rounds=args.max_rounds,
        target_spread=args.target_spread,
        clock=CLOCKS[clock],
    )
    speedup = timings.ratio("naive", "vectorised")
    print(
        json.dumps(
            {
                "benchmark": "grpo_loss_forward_backward",
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "clock": clock,
                "batch": args.batch,
                "length": args.length,
                "tokens": int(inputs["mask"].sum()),
                "vectorised_ms": round(1000 * timings.median("vectorised"), 3),
                "naive_loop_ms": round(1000 * timings.median("naive"), 3),
                **speedup.as_dict("speedup", 2),
                "rounds": timings.rounds,
                "ratio_settled": timings.converged,
                "max_abs_loss_diff": loss_diff,
                "max_abs_grad_diff": grad_diff,
            }
        )
    )


if __name__ == "__main__":
    main()
