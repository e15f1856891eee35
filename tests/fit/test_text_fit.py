"""qlite.fit on text: next-token training of small Llamas, perplexity, exact resume, frozen bases, bad input."""

import math

import pytest
import torch
from torch import nn

import qlite
from qlite import data
from qlite.training import FitConfig, fit, read_index
from qlite.training.text_loop import score_windows

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

CORPUS = ("ROMEO: But, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
          "JULIET: O Romeo, Romeo! wherefore art thou Romeo?\n") * 30


@pytest.fixture(scope="module")
def text():
    return data.text("mem", seqlen=32, text_override=CORPUS)


def tiny_llama(vocab, seed=0, dropout=0.0):
    from qlite.models import small_llama

    return small_llama(vocab, hidden_size=32, n_layers=2, n_heads=4, n_kv_heads=2, intermediate_size=64,
                       max_seq_len=64, dropout=dropout, seed=seed)


class Uniform(nn.Module):
    """Logits all zero: every token has probability 1 / V, so the perplexity is exactly V."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.zeros(*x.shape, self.vocab) + 0 * self.w


def test_uniform_model_perplexity_equals_the_vocabulary_size(text):
    scored = score_windows(Uniform(text.vocab_size), text.test, batch_size=4)
    assert scored["perplexity"] == pytest.approx(text.vocab_size, rel=1e-6)
    assert scored["bits_per_token"] == pytest.approx(math.log2(text.vocab_size), rel=1e-6)
    assert scored["n_tokens"] == text.test.shape[0] * (text.seqlen - 1) and scored["n_windows"] == text.test.shape[0]


def test_scores_equal_the_classical_evaluator(text):
    from qlite.classical.evaluation import perplexity

    model = tiny_llama(text.vocab_size)
    ours = score_windows(model, text.val, batch_size=3)
    ref = perplexity(model, text.val.reshape(-1), seqlen=text.seqlen, batch_size=2)
    assert ours["n_tokens"] == ref["n_tokens"]
    assert ours["perplexity"] == pytest.approx(ref["perplexity"], rel=1e-5)


def test_fit_trains_a_small_llama_and_reports_perplexity(text):
    model = tiny_llama(text.vocab_size)
    before = score_windows(model, text.val)["perplexity"]
    result = qlite.fit(model, text, batch_size=8, max_steps=40, lr=3e-3, eval_every=20)
    assert result.steps == 40 and result.history["step"] == list(range(1, 41))
    assert result.history["eval_step"] == [20, 40]
    assert result.metrics["perplexity"] < 0.5 * before  # it learned the text
    assert result.metrics["perplexity"] == pytest.approx(math.exp(result.metrics["nll"]))
    assert result.metrics["bits_per_token"] == pytest.approx(result.metrics["nll"] / math.log(2))
    assert result.metrics["n_tokens"] == text.val.shape[0] * 31
    assert result.eval_metrics["n_tokens"] == text.test.shape[0] * 31
    assert result.history["val_perplexity"][-1] == result.metrics["perplexity"]
    assert result.to_dict()["steps"] == 40
    # the model's own evaluation agrees with the reported metric
    assert score_windows(result.model, text.val)["perplexity"] == pytest.approx(result.metrics["perplexity"], rel=1e-6)


class Crash(RuntimeError):
    pass


def _crash_after(model, calls):
    count = [0]

    def hook(module, args, kwargs):
        if module.training:
            count[0] += 1
            if count[0] > calls:
                raise Crash(f"killed after {calls} training steps")

    return model.register_forward_pre_hook(hook, with_kwargs=True)


def test_resume_after_a_crash_reproduces_the_uninterrupted_run_exactly(tmp_path, text):
    # dropout (global RNG), cosine schedule over steps, AdamW moments, a permutation per epoch
    cfg = FitConfig(batch_size=16, max_steps=14, lr=3e-3, schedule="cosine", checkpoint_every=5, weight_decay=0.01)
    per_epoch = text.train.shape[0] // 16
    assert per_epoch < 10  # the run crosses epochs, so the resumed epoch order matters
    torch.manual_seed(123)
    whole = fit(tiny_llama(text.vocab_size, dropout=0.2), text, cfg)
    victim = tiny_llama(text.vocab_size, dropout=0.2)
    _crash_after(victim, 12)
    torch.manual_seed(123)
    with pytest.raises(Crash):
        fit(victim, text, cfg, checkpoint_dir=tmp_path)
    assert read_index(tmp_path)["step"] == 10
    torch.manual_seed(999)  # the checkpoint's RNG state must win
    resumed = fit(tiny_llama(text.vocab_size, seed=7, dropout=0.2), text, checkpoint_dir=tmp_path, resume=True)
    assert resumed.history["loss"] == whole.history["loss"]
    assert resumed.history["lr"] == whole.history["lr"]
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert resumed.metrics == whole.metrics
    assert read_index(tmp_path)["step"] == 14


def test_a_frozen_base_checkpoints_only_the_adapter(tmp_path, text):
    peft = pytest.importorskip("peft")

    def build(seed=0):
        base = tiny_llama(text.vocab_size, seed=seed)
        cfg = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            return peft.get_peft_model(base, cfg)

    model = build()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    result = fit(model, text, batch_size=4, max_steps=6, lr=1e-2, checkpoint_dir=tmp_path)
    for n, p in result.model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n  # the base stayed frozen
    index = read_index(tmp_path)
    assert index["adapter_only"] and index["base_fingerprint"]
    from safetensors.torch import load_file

    stored = [k for k in load_file(str(tmp_path / index["weights"])) if k.startswith("model.")]
    params = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {k[6:] for k in stored if "lora_" in k} == params  # every adapter weight ...
    assert not [k for k in stored if k[6:] in frozen]  # ... and no base weight
    # continuing onto the same base equals one longer run, bit for bit; onto another base is refused
    more = fit(build(), text, checkpoint_dir=tmp_path, resume=True, max_steps=8)
    longer = fit(build(), text, batch_size=4, max_steps=8, lr=1e-2)
    assert more.steps == 8 and more.history["loss"] == longer.history["loss"]
    assert all(torch.equal(a, b) for a, b in zip(more.model.state_dict().values(), longer.model.state_dict().values()))
    with pytest.raises(ValueError, match="another frozen base model"):
        fit(build(seed=5), text, checkpoint_dir=tmp_path, resume=True, max_steps=10)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, text):
    model = tiny_llama(text.vocab_size)
    calls = [0]

    def poison(module, args, output):
        if module.training:
            calls[0] += 1
            if calls[0] == 5:
                return output * math.nan

    model.lm_head.register_forward_hook(poison)
    with pytest.raises(FloatingPointError, match="at step 5; lower the learning rate"):
        fit(model, text, batch_size=4, max_steps=10, checkpoint_every=2, checkpoint_dir=tmp_path)
    index = read_index(tmp_path)
    assert index["step"] == 4 and all(math.isfinite(v) for v in index["history"]["loss"])


def test_bad_input_is_refused_before_training(text):
    with pytest.raises(ValueError, match="vocab_size=.*the tokenizer's"):
        fit(tiny_llama(text.vocab_size - 3), text, batch_size=4, max_steps=1)
    with pytest.raises(ValueError, match=r"vocabulary \(80 logits\) does not match"):
        fit(tiny_llama(80), text, batch_size=4, max_steps=1)
    with pytest.raises(ValueError, match="logits"):
        fit(nn.Linear(32, 4), text, batch_size=4, max_steps=1)
    with pytest.raises(ValueError, match="batch_size="):
        fit(tiny_llama(text.vocab_size), text, max_steps=1)
    with pytest.raises(ValueError, match="eval_data does not apply"):
        fit(tiny_llama(text.vocab_size), text, eval_data=text, batch_size=4)
    only_test = data.text("mem", seqlen=32, split=(0, 0, 1), text_override=CORPUS)
    with pytest.raises(ValueError, match="no training windows"):
        fit(tiny_llama(only_test.vocab_size), only_test, batch_size=4)
    with pytest.raises(ValueError, match="max_steps must be"):
        fit(tiny_llama(text.vocab_size), text, batch_size=4, max_steps=-1)
    frozen = tiny_llama(text.vocab_size).requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        fit(frozen, text, batch_size=4)


def test_text_resume_keeps_the_schedule(tmp_path, text):
    fit(tiny_llama(text.vocab_size), text, batch_size=8, max_steps=4, schedule="cosine", checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="planned over 4 steps"):
        fit(tiny_llama(text.vocab_size), text, checkpoint_dir=tmp_path, resume=True, max_steps=8)
