"""lmms-eval's own evaluator over marc's model (marc.eval.lmms) agrees with marc's evaluation.

lmms-eval lives in an environment of its own (``make lmms-venv`` builds ``.venv-lmms``;
``make test`` builds it first), so these tests run it in a subprocess of that environment:
``lmms-eval --model marc`` on a local task (YAML through ``--include_path``) over the
generated test split's videos. ``MARC_LMMS_PYTHON`` names another interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from marc.compression import build_compressor
from marc.data.annotations import read_annotations
from marc.data.dataset import VideoQADataset
from marc.eval.sweep import Setting, evaluate_settings
from marc.retrieval.retriever import VisualMemoryRetriever

from .conftest import untrained_retriever

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(max_frames=16, frame_size=56)
NEW_TOKENS = 6

TASK_UTILS = '''\
"""A marc-style lmms-eval task: marc's prompt and marc's scoring."""

from marc.data.prompts import format_question
from marc.rl.answers import is_correct


def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return format_question(doc["problem"], doc["options"], doc["problem_type"])


def process_results(doc, results):
    correct = is_correct(results[0], doc["solution"], doc["problem_type"], options=doc["options"])
    return {"accuracy": float(correct)}
'''


def lmms_python() -> Path:
    """The interpreter of the lmms-eval environment; fails (never skips) without one."""
    python = Path(os.environ.get("MARC_LMMS_PYTHON") or REPO / ".venv-lmms/bin/python")
    if not python.exists():
        pytest.fail(
            f"no lmms-eval environment at {python}: build it with `make lmms-venv` "
            "(make test does) or set MARC_LMMS_PYTHON"
        )
    return python


def offline_env(home: Path) -> dict:
    """lmms-eval, datasets and the hub offline, their caches under ``home``."""
    return {
        **os.environ,
        "HF_HOME": str(home / "hf"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }


def write_task(folder: Path, rows) -> Path:
    """An lmms-eval task over ``rows`` (marc annotations): docs, YAML and its functions."""
    folder.mkdir(parents=True)
    docs = folder / "docs.jsonl"
    with docs.open("w") as out:
        for row in rows:
            doc = {
                "problem_id": row.problem_id,
                "video": str(row.video_path),
                "problem": row.problem,
                "options": row.options,
                "solution": row.solution,
                "problem_type": row.problem_type,
            }
            out.write(json.dumps(doc) + "\n")
    (folder / "utils.py").write_text(TASK_UTILS)
    (folder / "marc_synthetic.yaml").write_text(
        textwrap.dedent(f"""\
        task: marc_synthetic
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {docs}
        test_split: test
        output_type: generate_until
        doc_to_visual: !function utils.doc_to_visual
        doc_to_text: !function utils.doc_to_text
        doc_to_target: solution
        generation_kwargs:
          max_new_tokens: {NEW_TOKENS}
          do_sample: false
        process_results: !function utils.process_results
        # lmms-eval strips <think>...</think> before scoring by default; marc scores whole
        # completions.
        reasoning_tags: none
        metric_list:
          - metric: accuracy
            aggregation: mean
            higher_is_better: true
        metadata:
          version: 0
        """)
    )
    return folder


def run_lmms_eval(task_dir: Path, model_args: str, out: Path) -> subprocess.CompletedProcess:
    """``lmms-eval --model marc`` through the environment's own console script."""
    command = [
        str(lmms_python().parent / "lmms-eval"),
        "--model", "marc", "--model_args", model_args,
        "--tasks", "marc_synthetic", "--include_path", str(task_dir),
        "--batch_size", "1", "--device", "cpu", "--log_samples", "--output_path", str(out),
    ]  # fmt: skip
    return subprocess.run(
        command, env=offline_env(out), capture_output=True, text=True, timeout=900, cwd=out
    )


def read_run(out: Path) -> tuple[dict, dict[int, str]]:
    """The run's results file and each document's response, by document index."""
    (results,) = out.rglob("*_results.json")
    (samples,) = out.rglob("*_samples_marc_synthetic.jsonl")
    responses = {}
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        response = sample["filtered_resps"]
        responses[sample["doc_id"]] = response[0] if isinstance(response, list) else response
    return json.loads(results.read_text()), responses


@pytest.fixture(scope="module")
def talkative_vlm_dir(tmp_path_factory):
    """A tiny VideoVLM whose greedy answers are words that differ from question to question.

    The random-init tiny model answers every question with newlines (an empty completion),
    which would make any two evaluations agree: its weights are perturbed (seeded) first.
    """
    from marc.models.vlm import VideoVLM

    vlm = VideoVLM.tiny(seed=0)
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in vlm.model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=noise) * 0.3)
    path = tmp_path_factory.mktemp("talkative_vlm") / "model"
    vlm.save_pretrained(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("vmr", [False, True])
def test_lmms_eval_accuracy_equals_marcs_own_evaluation(
    short_clips_dataset, talkative_vlm_dir, tmp_path, vmr
):
    rows, skipped = read_annotations(short_clips_dataset / "test.jsonl", short_clips_dataset)
    assert rows and not skipped
    task_dir = write_task(tmp_path / "task", rows)
    retriever_dir = untrained_retriever(tmp_path / "retriever") if vmr else None
    model_args = (
        f"pretrained={talkative_vlm_dir},compressor=MemoryAwareMerge,budget_frames=1,"
        f"max_frames={SMALL['max_frames']},frame_size={SMALL['frame_size']},output=completion"
    )
    if vmr:
        model_args += f",retriever={retriever_dir},query_field=problem"
    out = tmp_path / "out"
    out.mkdir()
    run = run_lmms_eval(task_dir, model_args, out)
    # lmms-eval logs an evaluation's error and still exits 0: the results file tells.
    assert run.returncode == 0 and list(out.rglob("*_results.json")), run.stderr[-6000:]
    results, responses = read_run(out)

    retriever = VisualMemoryRetriever.from_pretrained(retriever_dir) if vmr else None
    dataset = VideoQADataset(rows, **SMALL, retriever=retriever)
    setting = Setting("lmms", str(talkative_vlm_dir), "MemoryAwareMerge", vmr, 1)
    (answers,) = evaluate_settings(
        [setting], {vmr: dataset}, build_compressor, batch_size=1, max_new_tokens=NEW_TOKENS
    ).values()

    assert [a.problem_id for a in answers] == [row.problem_id for row in rows]
    assert responses == {i: a.completion for i, a in enumerate(answers)}
    assert len(set(responses.values())) > 1  # answers that tell the two evaluations apart
    accuracy = results["results"]["marc_synthetic"]["accuracy,none"]
    assert accuracy == sum(a.correct for a in answers) / len(answers)
    assert results["n-samples"]["marc_synthetic"]["effective"] == len(rows)


BAD_INPUT = """
import json, sys
from marc.eval.lmms import MarcLMM, ModelArgsError
from lmms_eval.models import get_model

assert get_model("marc") is MarcLMM
model_dir, empty_dir = sys.argv[1], sys.argv[2]
cases = {
    "no weights": f"pretrained={empty_dir}",
    "no model": "compressor=Identity",
    "unknown compressor": f"pretrained={model_dir},compressor=Squeeze",
    "bad budget": f"pretrained={model_dir},budget_frames=half",
    "unknown field": f"pretrained={model_dir},budget=4",
    "bad output": f"pretrained={model_dir},output=letters",
    "no retriever": f"pretrained={model_dir},retriever={empty_dir}/missing",
}
found = {}
for name, args in cases.items():
    try:
        MarcLMM.create_from_arg_string(args)
        found[name] = None
    except ModelArgsError as error:
        found[name] = [error.field, str(error)]
model = MarcLMM.create_from_arg_string(f"pretrained={model_dir}")
for method in ("loglikelihood", "generate_until_multi_round"):
    try:
        getattr(model, method)([])
        found[method] = None
    except NotImplementedError as error:
        found[method] = str(error)
completion = "<think> B or C </think> <answer> C </answer>"
found["answer"] = model._text(completion, [])
found["answer without tags"] = model._text("C it is", [])
found["cut"] = model._text(completion, ["</think>"])
model.output = "completion"
found["completion"] = model._text(completion, [])
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def plugin_checks(tiny_vlm_dir, tmp_path_factory) -> dict:
    """What MarcLMM does with bad model_args and with completions, in the lmms environment."""
    tmp_path = tmp_path_factory.mktemp("lmms_checks")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    run = subprocess.run(
        [str(lmms_python()), "-c", BAD_INPUT, str(tiny_vlm_dir), str(empty)],
        env=offline_env(tmp_path), capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-6000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_bad_model_args_name_their_field(plugin_checks):
    found = plugin_checks
    fields = {
        "no weights": "pretrained",
        "no model": "pretrained",
        "unknown compressor": "compressor",
        "bad budget": "budget_frames",
        "unknown field": "budget",
        "bad output": "output",
        "no retriever": "retriever",
    }
    for case, field in fields.items():
        assert found[case] is not None, f"{case}: no error"
        assert found[case][0] == field, found[case]
        assert found[case][1].startswith(f"model_args {field}="), found[case]
    assert "Squeeze" in found["unknown compressor"][1]
    assert "model.safetensors" in found["no weights"][1] or "weights" in found["no weights"][1]
    for method in ("loglikelihood", "generate_until_multi_round"):
        assert found[method] and "generate_until only" in found[method]


@pytest.mark.slow
def test_the_answer_output_is_the_text_of_the_answer_tags(plugin_checks):
    assert plugin_checks["answer"] == "C"
    assert plugin_checks["answer without tags"] == "C it is"  # the whole completion
    assert plugin_checks["cut"] == "<think> B or C "  # an `until` string cuts first
    assert plugin_checks["completion"] == "<think> B or C </think> <answer> C </answer>"


def test_without_the_environment_the_tests_fail_and_say_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setenv("MARC_LMMS_PYTHON", str(tmp_path / "missing/bin/python"))
    with pytest.raises(pytest.fail.Exception, match="make lmms-venv"):
        lmms_python()
