"""Can the tiny language model learn the multiple-choice letter lookup on its own?

Text only (a blank two-frame video): the prompt is a question with four generated options,
the completion names the chosen option's text and then its letter, exactly as the SFT
target does (``... the answer is red </think> <answer> B </answer>``). Options are drawn
fresh every step (unlimited data). Letter accuracy on held-out option lists is measured by
teacher forcing each of the four letters and taking the most likely one (chance 0.25).
``--letter-after-word`` asks for the letter right after the word as well
(``the answer is red B``), the easier layout for an attention lookup.

Run as ``python benchmarks/letter_lookup.py [--steps 3000 --batch 64 --lr 1e-3]``
(``--heads`` / ``--kv-heads`` / ``--layers`` change the language model); the last printed
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from marc.compression import Budget, Identity
from marc.data import synthetic
from marc.data.prompts import format_question, reference_completion
from marc.models.vlm import VideoVLM

OPTION_POOLS = [
    list(synthetic.OBJECT_COLOURS),
    list(synthetic.SHAPES),
    list(synthetic.DIRECTIONS),
    list(synthetic.COUNT_WORDS),
    [f"{c} {p}" for c in synthetic.BACKGROUND_COLOURS for p in synthetic.BACKGROUND_PATTERNS],
]
QUESTION = "What colour is the circle in the event with the grey plain background?"


def option_list(rng: random.Random) -> tuple[str, str, str]:
    """A prompt with four options, the chosen option's text and its letter."""
    texts = rng.sample(rng.choice(OPTION_POOLS), 4)
    index = rng.randrange(4)
    options = [f"{letter}. {text}" for letter, text in zip(synthetic.LETTERS, texts)]
    prompt = format_question(QUESTION, options, "multiple choice")
    return prompt, texts[index], synthetic.LETTERS[index]


def completion(text: str, letter: str, letter_after_word: bool) -> str:
    reasoning = f"the answer is {text} {letter}" if letter_after_word else f"the answer is {text}"
    return reference_completion(reasoning, letter)


@torch.no_grad()
def letter_accuracy(vlm: VideoVLM, video, held_out: list, letter_after_word: bool) -> float:
    """Share of held-out option lists whose most likely letter is the right one."""
    vlm.eval()
    hits = 0
    for prompt, text, letter in held_out:
        candidates = [completion(text, c, letter_after_word) for c in synthetic.LETTERS]
        scores = vlm.completion_logprobs([video] * 4, [prompt] * 4, candidates)
        totals = (scores.logprobs * scores.mask).sum(1)
        hits += synthetic.LETTERS[int(totals.argmax())] == letter
    vlm.train()
    return hits / len(held_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=None, help="attention heads (tiny default)")
    parser.add_argument("--kv-heads", type=int, default=None, help="key/value heads (tiny default)")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--held-out", type=int, default=60)
    parser.add_argument("--letter-after-word", action="store_true")
    parser.add_argument("--quick", action="store_true", help="40 steps of 8: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch, args.eval_every, args.held_out = 40, 8, 20, 12
    torch.manual_seed(0)
    heads = {"num_attention_heads": args.heads} if args.heads else {}
    if args.kv_heads:
        heads["num_key_value_heads"] = args.kv_heads
    vlm = VideoVLM.tiny(frame_size=56, num_hidden_layers=args.layers, **heads)
    blank = torch.zeros(2, 3, 56, 56, dtype=torch.uint8)
    optimizer = torch.optim.AdamW(vlm.parameters(), args.lr, weight_decay=0.01)
    rng, held_out_rng = random.Random(0), random.Random(1)
    held_out = [option_list(held_out_rng) for _ in range(args.held_out)]
    curve, start = {}, time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = [option_list(rng) for _ in range(args.batch)]
        targets = [completion(text, letter, args.letter_after_word) for _, text, letter in batch]
        # The video tokens are re-encoded each step: the vision tower trains along as in SFT.
        video = vlm.compress(blank, Identity(), Budget(frames=1))
        loss = vlm.sft_loss([video] * args.batch, [p for p, _, _ in batch], targets)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vlm.parameters(), 1.0)
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            curve[step] = round(letter_accuracy(vlm, video, held_out, args.letter_after_word), 3)
            print(f"step {step} loss {loss.item():.3f} letter accuracy {curve[step]}", flush=True)
    figures = {
        "benchmark": "letter_lookup",
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "layers": args.layers,
        "heads": vlm.model.config.text_config.num_attention_heads,
        "kv_heads": vlm.model.config.text_config.num_key_value_heads,
        "letter_after_word": args.letter_after_word,
        "held_out": args.held_out,
        "chance": 0.25,
        "letter_accuracy": curve[args.steps],
        "letter_accuracy_by_step": curve,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
