"""Print the results table of runs/x9/results.json (pass@1 strict with 95% bootstrap CI, tokens per answer,
invalid answers, stop reasons), one row per decoded file."""
import json, collections
res = json.load(open("runs/x9/results.json"))
print("| decoded file | method | source | tau | pass@1 strict (95% CI) | flexible | tokens/answer | invalid | stop reasons |")
print("|---|---|---|---|---|---|---|---|---|")
for e in res["entries"]:
    p = e["pass@1_strict"]
    stops = collections.Counter(json.loads(l)["stop_reason"] for l in open("runs/x9/decoded/" + e["file"]))
    print(f"| {e['file'].split('__')[0]} | {e['method']} | {e['signal_source']} | {e.get('tau', '')} | "
          f"{p['mean']:.3f} ({p['lo']:.3f}-{p['hi']:.3f}) | {e['pass@1_flexible']['mean']:.3f} | {e['tokens_per_answer']:.1f} | {e['invalid_strict']} | "
          f"{dict(stops)} |")
