"""Quick look-up experiments: tokenizer and size variants of the tiny CoT student (standalone)."""
import json, math, random, re, sys, time
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import argparse
ap = argparse.ArgumentParser()
ap.add_argument("--tok", default="base")
ap.add_argument("--hidden", type=int, default=128)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--steps", type=int, default=3000)
ap.add_argument("--bs", type=int, default=8)
ap.add_argument("--lr", type=float, default=3e-3)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--data", default="runs/e1/build/cot.jsonl")
ap.add_argument("--test", default="runs/e1/testbed/test_id.jsonl")
ap.add_argument("--neval", type=int, default=300)
ap.add_argument("--minutes", type=float, default=0)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0); random.seed(0)
recs = [json.loads(l) for l in open(a.data)]
texts = [r["prompt"] + r["completion"] for r in recs]

tok = Tokenizer(models.BPE())
pre = [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
if a.tok == "space":
    pre = [pre_tokenizers.Split(" ", behavior="isolated")] + pre
tok.pre_tokenizer = pre_tokenizers.Sequence(pre)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(texts[:5000], trainer=trainers.BpeTrainer(vocab_size=1024, special_tokens=["<pad>", "<bos>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
tok.add_tokens([AddedToken("\n\n", normalized=False)])
T = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
cfg = LlamaConfig(vocab_size=len(T), hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                  num_key_value_heads=a.heads, intermediate_size=3 * a.hidden, max_position_embeddings=1024,
                  tie_word_embeddings=True, bos_token_id=T.bos_token_id, eos_token_id=T.eos_token_id, pad_token_id=T.pad_token_id)
model = LlamaForCausalLM(cfg)
print("params", sum(p.numel() for p in model.parameters()), "vocab", len(T), flush=True)

def enc(r):
    p = [T.bos_token_id] + T(r["prompt"])["input_ids"]
    c = T(r["completion"])["input_ids"] + [T.eos_token_id]
    return p + c, [-100] * len(p) + c
data = [enc(r) for r in recs]
print("mean len", sum(len(d[0]) for d in data) / len(data), flush=True)
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0, betas=(0.9, 0.95))
warm = int(0.05 * a.steps)
def lr_at(s):
    if s < warm: return a.lr * (s + 1) / warm
    return a.lr * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, a.steps - warm)))
model.train(); t0 = time.time(); ntok = 0
for s in range(a.steps):
    batch = random.sample(data, a.bs)
    L = max(len(x) for x, _ in batch)
    ids = torch.tensor([x + [T.pad_token_id] * (L - len(x)) for x, _ in batch])
    lab = torch.tensor([y + [-100] * (L - len(y)) for _, y in batch])
    att = (torch.arange(L)[None] < torch.tensor([len(x) for x, _ in batch])[:, None]).long()
    for g in opt.param_groups: g["lr"] = lr_at(s)
    loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
    loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad()
    ntok += int(att.sum())
    if s % 500 == 0 or s == a.steps - 1:
        print(f"step {s} loss {loss.item():.3f} {time.time()-t0:.0f}s {ntok/(time.time()-t0):.0f} tok/s", flush=True)
model.eval()
qs = [json.loads(l) for l in open(a.test)][: a.neval]
T.padding_side = "left"
ok = 0
with torch.no_grad():
    for i in range(0, len(qs), 50):
        chunk = qs[i:i + 50]
        prompts = ["<bos>" + f"Question: {q['text']}\nThinking:\n" for q in chunk]
        b = T(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**b, max_new_tokens=96, do_sample=False, pad_token_id=T.pad_token_id, eos_token_id=T.eos_token_id)
        for q, o in zip(chunk, out):
            txt = T.decode(o[b["input_ids"].shape[1]:], skip_special_tokens=True)
            m = re.findall(r"\\boxed\{([^}]*)\}", txt)
            ok += bool(m) and m[-1].strip() == q["gold"]
            if i == 0 and q is chunk[0]: print(repr(txt))
print(json.dumps(vars(a)), "ACC", ok / len(qs), f"train {time.time()-t0:.0f}s", flush=True)
