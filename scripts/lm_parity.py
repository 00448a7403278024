"""transformers side of the language-model checks in `cargo xtask parity`.

  python lm_parity.py make DIR       writes Hugging Face folders with random weights and their
                                     logits: DIR/gpt2 (GPT-2 small, f32), DIR/llama (a small Llama
                                     with grouped-query attention, f32), DIR/llama_sharded (the
                                     same in shards), DIR/llama_bf16 and DIR/gpt2_bf16 (bf16
                                     weights, sharded); DIR/ids.npy, DIR/NAME_logits.npy, and
                                     DIR/NAME_generate.npy (greedy ids of 8 new tokens)
  python lm_parity.py fixtures DIR   the tiny folders the Rust tests read (committed):
                                     DIR/tiny_gpt2, DIR/tiny_llama (bf16, two shards), each with
                                     expected.json (ids, logits, greedy continuation)
  python lm_parity.py load DIR IDS OUT   logits of the folder DIR (an export of ours) on IDS
  python lm_parity.py bench DIR TOKENS NEW RUNS   tokens/s of prefill and cached decoding (JSON)
  python lm_parity.py compare A B    exits non-zero unless max|A-B| <= 1e-4 * max|A|
  python lm_parity.py greedy-ids IDS OUT   the prompts `make` continued, as --prompt-ids lines
  python lm_parity.py same-ids A B   exits non-zero unless transformers' greedy ids A match
                                     `fasterai generate --json` output B

For bf16 folders the reference is their bf16 weights upcast to f32, computing in f32 (what we
do). Nothing but the tiny fixtures is committed: GPT-2 small is 0.5 GB.
"""
import json
import sys

import numpy as np
import torch
import transformers as tf


def randomize(model: torch.nn.Module, seed: int, matrices: float = 0.0) -> None:
    """Non-trivial norms and biases (the default init leaves them 1 and 0); with `matrices`,
    every matrix drawn from N(0, matrices²) too (tiny models then predict varied tokens)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and matrices > 0:
                p.copy_(matrices * torch.randn(p.shape, generator=g))
            if p.dim() == 1:
                base = 1.0 if ("ln" in name or "norm" in name) and name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))


def gpt2(vocab=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024, seed=0, matrices=0.0):
    torch.manual_seed(seed)
    config = tf.GPT2Config(vocab_size=vocab, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                           n_positions=n_positions, bos_token_id=vocab - 1, eos_token_id=vocab - 1)
    model = tf.GPT2LMHeadModel(config)
    randomize(model, seed, matrices)
    return model.eval()


def llama(vocab=1000, hidden=256, layers=4, heads=8, kv_heads=2, inter=688, seed=1, bias=False,
          matrices=0.0):
    torch.manual_seed(seed)
    config = tf.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                            num_hidden_layers=layers, num_attention_heads=heads,
                            num_key_value_heads=kv_heads, max_position_embeddings=256,
                            rope_theta=50000.0, attention_bias=bias, rms_norm_eps=1e-5,
                            bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = tf.LlamaForCausalLM(config)
    randomize(model, seed, matrices)
    return model.eval()


def logits(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits.float().numpy()


def greedy(model, ids: np.ndarray, new: int, mask: np.ndarray = None) -> np.ndarray:
    """Greedy continuations; after the end-of-text token a sequence is padded with it."""
    eos = model.config.eos_token_id
    kwargs = {} if mask is None else {"attention_mask": torch.from_numpy(mask)}
    with torch.no_grad():
        out = model.generate(torch.from_numpy(ids), max_new_tokens=new, do_sample=False,
                             pad_token_id=eos, **kwargs)
    return out[:, ids.shape[1]:].numpy()


def as_f32(folder: str, cls):
    """A bf16 folder's weights upcast to f32."""
    return cls.from_pretrained(folder, dtype=torch.bfloat16).float().eval()


def make(out: str) -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, size=(2, 64)).astype(np.int64)
    np.save(f"{out}/ids.npy", ids)
    g = gpt2()
    g.save_pretrained(f"{out}/gpt2")
    np.save(f"{out}/gpt2_logits.npy", logits(g, ids))
    np.save(f"{out}/gpt2_generate.npy", greedy(g, ids[:, :16], 8))
    g.to(torch.bfloat16).save_pretrained(f"{out}/gpt2_bf16", max_shard_size="100MB")
    g16 = as_f32(f"{out}/gpt2_bf16", tf.GPT2LMHeadModel)
    np.save(f"{out}/gpt2_bf16_logits.npy", logits(g16, ids))
    m = llama()
    m.save_pretrained(f"{out}/llama")
    m.save_pretrained(f"{out}/llama_sharded", max_shard_size="1MB")
    np.save(f"{out}/llama_logits.npy", logits(m, ids))
    np.save(f"{out}/llama_sharded_logits.npy", logits(m, ids))
    np.save(f"{out}/llama_generate.npy", greedy(m, ids[:, :16], 8))
    m.to(torch.bfloat16).save_pretrained(f"{out}/llama_bf16", max_shard_size="1MB")
    m16 = as_f32(f"{out}/llama_bf16", tf.LlamaForCausalLM)
    np.save(f"{out}/llama_bf16_logits.npy", logits(m16, ids))
    print(f"gpt2: {sum(p.numel() for p in g.parameters())} parameters; "
          f"llama: {sum(p.numel() for p in m.parameters())}")


def fixtures(out: str) -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 96, size=(2, 12)).astype(np.int64)
    padded = ids[:, :4].copy()
    padded[1, :2] = 0
    mask = np.ones_like(padded)
    mask[1, :2] = 0
    for name, model, cls, dtype, shard in [
        ("tiny_gpt2", gpt2(vocab=96, n_embd=32, n_layer=2, n_head=4, n_positions=32,
                                matrices=0.25),
         tf.GPT2LMHeadModel, torch.float32, "1GB"),
        ("tiny_llama", llama(vocab=96, hidden=32, layers=2, heads=4, kv_heads=2, inter=48,
                             bias=True, matrices=0.25), tf.LlamaForCausalLM, torch.bfloat16, "20KB"),
    ]:
        folder = f"{out}/{name}"
        model.to(dtype).save_pretrained(folder, max_shard_size=shard)
        reference = as_f32(folder, cls) if dtype == torch.bfloat16 else model
        expected = {
            "transformers": tf.__version__,
            "ids": ids.tolist(),
            "logits_shape": list(logits(reference, ids).shape),
            "logits": logits(reference, ids).flatten().tolist(),
            "greedy_prompt": ids[:, :4].tolist(),
            "greedy": greedy(reference, ids[:, :4], 6).tolist(),
            # Prompts of 4 and 2 tokens, the second left-padded with 0 and masked.
            "padded_prompt": padded.tolist(),
            "padded_mask": mask.tolist(),
            "padded_greedy": greedy(reference, padded, 6, mask).tolist(),
            "eos_token_id": reference.config.eos_token_id,
        }
        with open(f"{folder}/expected.json", "w") as f:
            json.dump(expected, f)
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters")


def load(folder: str, ids_path: str, out: str) -> None:
    model = tf.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    np.save(out, logits(model, np.load(ids_path)))


def compare(expected_path: str, actual_path: str) -> None:
    expected, actual = np.load(expected_path), np.load(actual_path)
    if expected.shape != actual.shape:
        sys.exit(f"shape mismatch: transformers {expected.shape}, fasterai {actual.shape}")
    diff = float(np.abs(expected - actual).max())
    scale = float(np.abs(expected).max())
    ok = diff <= 1e-4 * scale
    print(f"{actual_path}: max|diff| = {diff:.3e}, max|y| = {scale:.3e}, "
          f"relative {diff / scale:.2e} -> {'OK' if ok else 'FAIL'}")
    if not ok:
        sys.exit(1)


def bench(folder: str, tokens: str, new: str, runs: str) -> None:
    """Tokens/s of a prefill of TOKENS and of decoding NEW tokens over the cache, batch 1,
    median of RUNS after one warm-up; JSON on stdout."""
    import time
    model = tf.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokens, new, runs = int(tokens), int(new), int(runs)
    vocab = model.config.vocab_size
    ids = (torch.arange(tokens) * 7919 % vocab).reshape(1, tokens)
    prefill, decode = [], []
    with torch.inference_mode():
        for run in range(runs + 1):
            start = time.perf_counter()
            out = model(ids, use_cache=True)
            prefill_s = time.perf_counter() - start
            past = out.past_key_values
            start = time.perf_counter()
            for step in range(new):
                nxt = torch.tensor([[step % vocab]])
                out = model(nxt, past_key_values=past, use_cache=True)
                past = out.past_key_values
            decode_s = (time.perf_counter() - start) / new
            if run > 0:
                prefill.append(prefill_s)
                decode.append(decode_s)
    prefill.sort()
    decode.sort()
    p, d = prefill[len(prefill) // 2], decode[len(decode) // 2]
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "prefill_ms": p * 1e3, "prefill_tokens_per_second": tokens / p,
                      "decode_ms_per_token": d * 1e3, "decode_tokens_per_second": 1 / d}))


def greedy_ids(ids_path: str, out: str) -> None:
    """The prompts `make` continued (the first 16 ids of each row), one comma-separated line
    each, for `fasterai generate --prompt-ids`."""
    ids = np.load(ids_path)[:, :16]
    with open(out, "w") as f:
        f.write("\n".join(",".join(str(int(t)) for t in row) for row in ids) + "\n")


def same_ids(expected_path: str, actual_path: str) -> None:
    """transformers' greedy ids (padded with the end-of-text id after it) against
    `fasterai generate --json`'s `new_ids` (which stop at it)."""
    expected = np.load(expected_path)
    with open(actual_path) as f:
        actual = json.load(f)["new_ids"]
    ok = len(actual) == len(expected)
    for want, got in zip(expected.tolist(), actual):
        ok = ok and want[:len(got)] == got and (len(got) == len(want) or
                                                 all(t == want[len(got) - 1] for t in want[len(got):]))
    print(f"{actual_path}: {'same ids' if ok else f'DIFFERENT: {expected.tolist()} vs {actual}'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    commands = {"make": make, "fixtures": fixtures, "load": load, "compare": compare,
                "greedy-ids": greedy_ids, "same-ids": same_ids, "bench": bench}
    if len(sys.argv) < 3 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
