"""Probe a trained tiny student (default: the pretrained base) on single-hop look-ups and drills,
in the pretrain corpus's own format. Usage: python experiments/probe_lookup.py STUDENT_DIR [N]"""
import json, sys, random, torch
from rscaffold.model import load_student
path = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
model, tok, meta = load_student(path, "cpu"); lm = model.base_lm().eval()
qs = [json.loads(l) for l in open("runs/x9/testbed/test_id.jsonl")][:n]
rng = random.Random(0); ok = tot = 0; ok_last = 0
def gen(text, k=4):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if meta.get("add_bos"): ids = [tok.bos_token_id] + ids
    x = torch.tensor([ids])
    with torch.no_grad():
        out = lm.generate(x, max_new_tokens=k, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, len(ids):])
for q in qs:
    given = [d for d in q["metadata"]["quantities"] if d["op"] == "given"]
    d = rng.choice(given); item = q["metadata"]["item"]
    g = gen(f"{q['text']}\nHow many {item} does {d['name']} have? {d['name']} has")
    got = g.strip().split(".")[0].strip()
    ok += got == str(d["value"]); tot += 1
print(json.dumps({"student": path, "lookup_acc": ok / tot, "n": tot, "example": g}))
