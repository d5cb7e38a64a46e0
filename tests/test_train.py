import pytest
import torch

from obliviate.errors import TrainingError
from obliviate.losses import IGNORE_INDEX
from obliviate.methods import FineTune
from obliviate.train import TrainConfig, pad_collate, train


def _examples(tokenizer):
    ids = tokenizer("Harry Potter went to Hogwarts with Ron and Hermione. " * 8)["input_ids"]
    return [{"input_ids": ids[i:i + 24]} for i in range(0, 96, 24)]


def test_pad_collate():
    batch = pad_collate([{"input_ids": [1, 2, 3], "labels": [2, 3, -100]}, {"input_ids": [4], "labels": [5]}],
                        pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[2, 3, -100], [5, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_finetune_lowers_loss_and_logs(tiny_model, tiny_tokenizer):
    records = []
    examples = _examples(tiny_tokenizer)
    config = TrainConfig(epochs=4, learning_rate=5e-3, batch_size=2, grad_accum=2, eval_every=1)
    result = train(tiny_model, FineTune(), examples, config, heldout_examples=examples[:1],
                   pad_id=tiny_tokenizer.pad_token_id, log=records.append)
    assert result.steps == 4  # 4 examples / (2 x 2) per step x 4 epochs
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert all("heldout_loss" in r for r in result.history)
    assert result.history[-1]["heldout_loss"] < result.history[0]["heldout_loss"]
    assert len([r for r in records if "loss" in r]) == 4
    assert not tiny_model.training


class _Interrupting(FineTune):
    def __init__(self, at_call):
        super().__init__()
        self.calls, self.at_call = 0, at_call

    def loss(self, model, batch):
        self.calls += 1
        if self.calls == self.at_call:
            raise KeyboardInterrupt
        return super().loss(model, batch)


def test_interrupted_run_resumes_to_the_same_weights(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    def fresh():
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)

    examples = _examples(tiny_tokenizer)
    config = TrainConfig(epochs=3, learning_rate=5e-3, batch_size=2, checkpoint_every=2, seed=3)
    reference = fresh()
    train(reference, FineTune(), examples, config, pad_id=tiny_tokenizer.pad_token_id)

    ckpt = tmp_path / "ckpt"
    model = fresh()
    with pytest.raises(KeyboardInterrupt):
        train(model, _Interrupting(at_call=4), examples, config, pad_id=tiny_tokenizer.pad_token_id,
              checkpoint_dir=ckpt)
    assert (ckpt / "progress.json").exists()
    resumed = fresh()
    events = []
    result = train(resumed, FineTune(), examples, config, pad_id=tiny_tokenizer.pad_token_id, checkpoint_dir=ckpt,
                   log=events.append)
    assert events[0]["event"] == "resumed" and events[0]["step"] == 2
    assert result.steps == 6
    for (name, a), (_, b) in zip(reference.named_parameters(), resumed.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    assert not ckpt.exists()  # removed once training completed


class _Exploding(FineTune):
    def loss(self, model, batch):
        loss, logs = super().loss(model, batch)
        return loss * float("nan"), logs


def test_non_finite_loss_is_a_clear_error(tiny_model, tiny_tokenizer):
    with pytest.raises(TrainingError, match="loss became nan at step 1: lower the learning rate"):
        train(tiny_model, _Exploding(), _examples(tiny_tokenizer), TrainConfig(), pad_id=0)


def test_no_examples(tiny_model):
    with pytest.raises(TrainingError, match="no training examples"):
        train(tiny_model, FineTune(), [], TrainConfig(), pad_id=0)


class _RecordingBar:
    """Stands in for the tqdm bar: records what the loop tells it."""

    def __init__(self, total, desc):
        self.total, self.n, self.first_total = total, 0, total

    def update(self, n):
        self.n += n

    def set_postfix(self, **_):
        pass

    def close(self):
        pass


def test_progress_bar_ends_at_its_total_with_unequal_blocks(tiny_model, tiny_tokenizer, monkeypatch):
    bars = []
    monkeypatch.setattr("obliviate.train.token_bar", lambda total, desc: bars.append(_RecordingBar(total, desc))
                        or bars[-1])
    ids = tiny_tokenizer("Harry Potter went to Hogwarts with Ron and Hermione. " * 8)["input_ids"]
    examples = [{"input_ids": ids[:n]} for n in (40, 8, 8, 8, 8, 8)]  # one long block, many short ones
    train(tiny_model, FineTune(), examples, TrainConfig(max_steps=2, batch_size=2, learning_rate=1e-4),
          pad_id=tiny_tokenizer.pad_token_id)
    bar = bars[0]
    assert bar.first_total == round(80 / 3 * 2)  # the average estimate: 80 tokens in 3 steps per epoch
    assert bar.n == bar.total  # re-aimed each step: ends at 100% whichever blocks were drawn
