"""Look-up probe of a base: question text, then 'N =' for a random given quantity; right if the greedy value matches."""
import json, random, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
path, qfile = sys.argv[1], sys.argv[2]
m = AutoModelForCausalLM.from_pretrained(path).eval(); t = AutoTokenizer.from_pretrained(path)
rng = random.Random(0); ok = n = 0; ans = []; BY = {}; POS = {}
for line in list(open(qfile))[:300]:
    q = json.loads(line); given = [d for d in q["metadata"]["quantities"] if d["op"] == "given"]
    d = rng.choice(given)
    ids = [t.bos_token_id] + t(q["text"] + "\n" + f"{d['name']} =")["input_ids"]
    out = m.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False, pad_token_id=t.pad_token_id)
    txt = t.decode(out[0, len(ids):], skip_special_tokens=True).split("\n")[0].strip()
    ok += txt == str(d["value"]); n += 1; ans.append(txt); BY.setdefault((d["value"] >= 10, txt == str(d["value"])), []).append(1); POS.setdefault((given.index(d), txt == str(d["value"])), []).append(1)
print(path, "lookup", ok / n, "n", n, "top answers", __import__("collections").Counter(ans).most_common(3))
print({k: len(v) for k, v in sorted(BY.items())}); print({k: len(v) for k, v in sorted(POS.items())})
