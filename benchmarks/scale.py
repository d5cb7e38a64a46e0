"""Memory and throughput of each stage and method, for 1 and 2 processes (and more on GPUs).

    python benchmarks/scale.py --device cpu --processes 1 2          # this repository's CPU run
    python benchmarks/scale.py --device gpu --shape 1b --processes 1 # on a GPU machine
    python benchmarks/scale.py --device gpu --shape 7b-8l --processes 1 2

Every (stage, processes) pair runs in its own ``accelerate launch`` (so each peak is its own):
a randomly initialised Llama of the chosen shape trains through obliviate's one loop
(``obliviate.train.train``) at the same global batch for any number of processes
(``batch_size`` per process, ``grad_accum = 2 / processes``), or makes WHP labels
(``generate_generic_labels``, sharded across the processes). In the same process it measures the
raw loops on the same shapes: plain forward passes, and forward + backward + AdamW.

Reported per stage: tokens/s of the whole run (all processes); its ratio to the raw
forward+backward loop (training stages) or to two raw forward passes (labels; the paper's two
models), the raw numbers taken per process and multiplied by the processes; peak memory per
process (CUDA: ``max_memory_allocated``; CPU: the growth of the peak RSS over the process before
the model was built) as a multiple of the theoretical need of :mod:`obliviate.memory`; on GPUs,
model FLOPs utilisation (6 x parameters + attention FLOPs per trained token, 2 x parameters per
token of a frozen-reference forward, in bf16, against ``--peak-tflops``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

SHAPES = {  # Llama configurations: hidden, layers, heads, kv heads, intermediate, vocab; (batch, sequence)
    "cpu-tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=352, vocab_size=2048, batch=4, seq=128),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, vocab_size=128256, batch=4, seq=2048),
    "7b-8l": dict(hidden_size=4096, num_hidden_layers=8, num_attention_heads=32, num_key_value_heads=32,
                  intermediate_size=11008, vocab_size=32000, batch=2, seq=2048),
}
STAGES = ("reinforce", "labels", "finetune", "npo", "rmu")
GLOBAL_MICRO_BATCHES = 2  # micro-batches per optimizer step over all processes (so 1 or 2 processes)


def build_model(shape: dict, device: str, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**{k: v for k, v in shape.items() if k not in ("batch", "seq")},
                         max_position_embeddings=shape["seq"], tie_word_embeddings=False)
    return LlamaForCausalLM(config).to(device=device, dtype=dtype)


def model_flops_per_token(model, seq: int) -> float:
    """Forward+backward FLOPs per token: 6 x parameters + 12 x layers x hidden x sequence (attention)."""
    c = model.config
    params = sum(p.numel() for p in model.parameters())
    return 6 * params + 12 * c.num_hidden_layers * c.hidden_size * seq


class _Identity:
    """An anchored-terms matcher that translates nothing (the labels cost is the two forward passes)."""

    def translate(self, block, rng):
        from obliviate.whp.anchors import TranslatedBlock

        return TranslatedBlock(original_ids=block, translated_ids=block, position_map=list(range(len(block))),
                               neutralize=[], counterparts={}, n_matches=0)


def raw_loops(model, batch: int, seq: int, steps: int) -> dict:
    """Per-process tokens/s of plain forward passes and of forward + backward + AdamW."""
    import copy

    import torch

    device = next(model.parameters()).device
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model.eval()
    with torch.inference_mode():
        model(input_ids=ids)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            model(input_ids=ids)
        sync()
        forward = batch * seq * steps / (time.perf_counter() - start)
    trained = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(trained.parameters(), lr=1e-6)
    for i in range(steps + 1):
        if i == 1:
            sync()
            start = time.perf_counter()
        trained(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    train_rate = batch * seq * steps / (time.perf_counter() - start)
    del trained, opt
    return {"forward": forward, "forward_backward": train_rate}


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args) -> None:
    import torch

    from obliviate.memory import ModelShape, estimate_labels, estimate_method, estimate_training
    from obliviate.runs import distributed_state, is_main_process, process_index
    from obliviate.train import TrainConfig, train

    distributed_state()
    rank, processes = process_index()
    shape = SHAPES[args.shape]
    gpu = args.device == "gpu"
    device = f"cuda:{torch.cuda.current_device()}" if gpu else "cpu"
    dtype = torch.bfloat16 if gpu else torch.float32
    bytes_per_value = 2 if gpu else 4
    batch, seq, steps = shape["batch"], shape["seq"], args.steps
    baseline = rss_bytes()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    model = build_model(shape, device, dtype)
    model_shape = ModelShape.of(model)
    generator = torch.Generator().manual_seed(1)
    n_examples = steps * batch * GLOBAL_MICRO_BATCHES
    blocks = torch.randint(0, shape["vocab_size"], (n_examples, seq), generator=generator).tolist()
    config = TrainConfig(max_steps=steps, batch_size=batch, grad_accum=GLOBAL_MICRO_BATCHES // processes,
                         learning_rate=1e-5, max_grad_norm=1.0)
    stage = args.stage
    flops_per_token = model_flops_per_token(model, seq)
    start = time.perf_counter()
    if stage == "labels":
        from obliviate.whp.labels import LabelConfig, generate_generic_labels

        reinforced = build_model(shape, device, dtype)
        share = generate_generic_labels(model, reinforced, blocks, _Identity(), LabelConfig(batch_size=batch), 0,
                                        shard=(rank, processes))
        if processes > 1:
            from accelerate.utils import gather_object

            gather_object([len(share["examples"])])
        if gpu:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        tokens, flops = n_examples * seq, 0.0
        need = estimate_labels(model_shape, batch_size=batch, seq_len=seq, bytes_per_value=bytes_per_value)
    else:
        from obliviate.methods import NPO, RMU, FineTune, WHPDistill
        from obliviate.methods.rmu import RMUConfig

        if stage == "reinforce":
            method, examples = FineTune(), [{"input_ids": b} for b in blocks]
            need = estimate_training(model_shape, batch_size=batch, seq_len=seq, bytes_per_value=bytes_per_value)
        elif stage == "finetune":
            method = WHPDistill()
            examples = [{"input_ids": b, "labels": b[1:] + [-100]} for b in blocks]
            need = estimate_training(model_shape, batch_size=batch, seq_len=seq, bytes_per_value=bytes_per_value)
        else:
            method = NPO() if stage == "npo" else RMU(RMUConfig(layer=min(2, shape["num_hidden_layers"] - 1)))
            method.prepare(model, None)
            examples = [{"forget": {"input_ids": b}, "retain": {"input_ids": blocks[-1 - i]}}
                        for i, b in enumerate(blocks)]
            need = estimate_method(model_shape, stage, batch_size=batch, seq_len=seq, bytes_per_value=bytes_per_value)
        result = train(model, method, examples, config, desc=stage)
        seconds, tokens = result.seconds, result.tokens
        params = sum(p.numel() for p in model.parameters())
        # forget and retain tokens are trained on (6N each); NPO's reference reads the forget half (2N)
        flops = {"reinforce": flops_per_token * tokens, "finetune": flops_per_token * tokens,
                 "npo": flops_per_token * tokens + 2 * params * tokens / 2}.get(stage, 0.0)  # RMU: no MFU
    peak = torch.cuda.max_memory_allocated() if gpu else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    raw = raw_loops(model.to(device) if stage != "rmu" else build_model(shape, device, dtype), batch, seq, steps)
    result = {"stage": stage, "processes": processes, "rank": rank, "tokens": tokens, "seconds": seconds,
              "tokens_per_s": tokens / seconds, "raw_forward_per_process": raw["forward"],
              "raw_forward_backward_per_process": raw["forward_backward"], "peak_bytes": peak,
              "need_bytes": need.total, "need_gib": need.gib(), "model_flops": flops}
    results = [result]
    if processes > 1:
        from accelerate.utils import gather_object

        results = gather_object([result])
    if is_main_process():
        Path(args.json).write_text(json.dumps(results))


def summarise(results: list[dict], gpu: bool, peak_tflops: float) -> dict:
    """One row per (stage, processes) from every process's numbers."""
    first = results[0]
    processes = first["processes"]
    raw_fwd = sum(r["raw_forward_per_process"] for r in results)
    raw_train = sum(r["raw_forward_backward_per_process"] for r in results)
    rate = first["tokens_per_s"]
    if first["stage"] == "labels":
        ratio, against = rate / (raw_fwd / 2), "2 raw forwards"
    else:
        ratio, against = rate / raw_train, "raw fwd+bwd"
    row = {"stage": first["stage"], "processes": processes, "tokens_per_s": round(rate, 1),
           "ratio": round(ratio, 3), "against": against,
           "peak_gib": round(max(r["peak_bytes"] for r in results) / 2 ** 30, 3),
           "need_gib": round(first["need_bytes"] / 2 ** 30, 3),
           "peak_over_need": round(max(r["peak_bytes"] for r in results) / first["need_bytes"], 2)}
    if gpu and first["model_flops"]:
        row["mfu"] = round(first["model_flops"] / first["seconds"] / (peak_tflops * 1e12 * processes), 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None, help="default: cpu-tiny on CPU, 1b on GPU")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps (label batches per process x processes)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak per GPU (H100/H200 SXM)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.shape = args.shape or ("cpu-tiny" if args.device == "cpu" else "1b")
    if args.worker:
        worker(args)
        return 0
    for n in args.processes:
        if n < 1 or GLOBAL_MICRO_BATCHES % n:
            print(f"error: --processes {n}: use 1 or 2 (the global batch is {GLOBAL_MICRO_BATCHES} micro-batches)",
                  file=sys.stderr)
            return 2
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OBLIVIATE_PROGRESS": "0", "TOKENIZERS_PARALLELISM": "false"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages:
            for n in args.processes:
                out = Path(tmp) / f"{stage}-{n}.json"
                launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n),
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
                launch += ["--multi_gpu"] if n > 1 else (["--cpu"] if args.device == "cpu" else [])
                command = [*launch, str(Path(__file__).resolve()), "--worker", "--stage", stage, "--device",
                           args.device, "--shape", args.shape, "--steps", str(args.steps), "--json", str(out)]
                # one thread per process: on a shared 2-core machine more threads thrash (40x slower, measured)
                threads = {"OMP_NUM_THREADS": "1"} if args.device == "cpu" else {}
                done = subprocess.run(command, env={**env, **threads}, capture_output=True, text=True)
                if done.returncode:
                    print(done.stderr[-3000:], file=sys.stderr)
                    return 1
                rows.append(summarise(json.loads(out.read_text()), args.device == "gpu", args.peak_tflops))
                print(json.dumps(rows[-1]), flush=True)
    print(f"\nshape {args.shape} ({args.device}), global batch {GLOBAL_MICRO_BATCHES} x {SHAPES[args.shape]['batch']} "
          f"x {SHAPES[args.shape]['seq']} tokens, {args.steps} steps\n")
    mfu = args.device == "gpu"
    print("| stage | processes | tokens/s | vs raw | peak GiB / process | need GiB | peak / need |"
          + (" MFU |" if mfu else ""))
    print("|---|---:|---:|---|---:|---:|---:|" + ("---:|" if mfu else ""))
    for r in rows:
        print(f"| {r['stage']} | {r['processes']} | {r['tokens_per_s']} | {r['ratio']} x {r['against']} | "
              f"{r['peak_gib']} | {r['need_gib']} | {r['peak_over_need']} |" + (f" {r.get('mfu', '')} |" if mfu else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
