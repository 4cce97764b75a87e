"""Quick pass@1 of decoded files (last \\boxed{} == gold), tokens/answer, stop reasons. Usage: quickscore.py FILE..."""
import json, re, sys, collections
for f in sys.argv[1:]:
    rs = [json.loads(l) for l in open(f)]
    def right(r):
        m = re.findall(r"\\boxed\{([^}]*)\}", r.get("answer_text", "")); return bool(m) and m[-1].strip() == r["gold"]
    ok = sum(map(right, rs))
    print(f"{f.split('/')[-1]}: n={len(rs)} acc={ok/len(rs):.3f} tok/ans={sum(r['tokens'] for r in rs)/len(rs):.1f} {dict(collections.Counter(r['stop_reason'] for r in rs))}")
