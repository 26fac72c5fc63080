"""The JoeyNMT side of `benchmarks.peer_joeynmt`, run in the peer environment (torch +
joeynmt 2.3.0, not jaxattn) as a subprocess: one JSON command a line on stdin, one JSON
answer a line on stdout (JoeyNMT's own logging goes to stderr).

    python benchmarks/peer_joeynmt_driver.py CONFIG.yaml
    {"cmd": "threads", "n": 1}                 -> {"threads": 1}
    {"cmd": "train", "updates": 40}            -> {"seconds", "tokens", "updates", "loss"}
    {"cmd": "decode", "beam": 5, "batch": 128} -> {"seconds", "sentences", "mean_len", "cut"}
    {"cmd": "quit"}

Training runs TrainManager's own update (`_train_step`, gradient clipping, the optimizer and
the scheduler, as `train_and_validate` does), batches drawn from JoeyNMT's data iterator
inside the timed window; decoding is `joeynmt.prediction.predict` over the test split.
"""

import json
import os
import sys
import time


def main(config_path: str) -> None:
    answer = os.fdopen(os.dup(1), "w")  # the protocol's stdout; everything else -> stderr
    os.dup2(2, 1)
    import torch
    from joeynmt.config import load_config, parse_global_args, set_validation_args
    from joeynmt.prediction import predict, prepare
    from joeynmt.training import TrainManager

    cfg = load_config(config_path)
    args = parse_global_args(cfg, rank=0, mode="train")
    model, train_data, _, test_data = prepare(args, rank=0, mode="train")
    trainer = TrainManager(
        model=model,
        model_dir=args.model_dir,
        device=args.device,
        n_gpu=0,
        rank=0,
        num_workers=0,
        autocast=args.autocast,
        seed=args.seed,
        train_args=args.train,
        dev_args=set_validation_args(args.test),
    )
    batches = _batches(train_data, args, model)

    def update() -> tuple[int, float]:
        batch = next(batches)
        loss, _ = trainer._train_step(batch)
        trainer.clip_grad_fun(parameters=model.parameters())
        trainer.optimizer.step()
        if trainer.scheduler_step_at == "step":
            trainer.scheduler.step(trainer.stats.steps)
        model.zero_grad()
        trainer.stats.steps += 1
        return int(batch.ntokens), loss

    def train(updates: int) -> dict:
        t, tokens, loss = time.perf_counter(), 0, float("nan")
        for _ in range(updates):
            n, loss = update()
            tokens += n
        return {
            "seconds": time.perf_counter() - t,
            "tokens": tokens,
            "updates": updates,
            "loss": loss,
            "step": trainer.stats.steps,
        }

    def decode(beam: int, batch: int) -> dict:
        test_args = args.test._replace(batch_size=batch, batch_type="sentence", beam_size=beam)
        t = time.perf_counter()
        out = predict(model, test_data, args.device, 0, args=test_args, autocast=args.autocast)
        seconds = time.perf_counter() - t
        tokens = out[3]  # decoded token lists, EOS stripped
        limit = test_args.max_output_length
        return {
            "seconds": seconds,
            "sentences": len(tokens),
            "mean_len": sum(map(len, tokens)) / max(len(tokens), 1),
            "cut": sum(len(x) >= limit for x in tokens) / max(len(tokens), 1),
        }

    answer.write(json.dumps({"ready": True, "torch": torch.__version__}) + "\n")
    answer.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        if cmd["cmd"] == "threads":
            torch.set_num_threads(cmd["n"])
            out = {"threads": torch.get_num_threads()}
        elif cmd["cmd"] == "train":
            out = train(cmd["updates"])
        elif cmd["cmd"] == "decode":
            out = decode(cmd["beam"], cmd["batch"])
        else:
            out = {"error": f"unknown command {cmd['cmd']!r}"}
        answer.write(json.dumps(out) + "\n")
        answer.flush()


def _batches(train_data, args, model):
    """JoeyNMT's training batches (its DataLoader, reshuffled each epoch), forever."""
    epoch = 0
    while True:
        epoch += 1
        it = train_data.make_iter(
            batch_size=args.train.batch_size,
            batch_type=args.train.batch_type,
            seed=args.seed + epoch,
            shuffle=args.train.shuffle,
            num_workers=0,
            device=args.device,
            eos_index=model.eos_index,
            pad_index=model.pad_index,
        )
        yield from it


if __name__ == "__main__":
    main(sys.argv[1])
