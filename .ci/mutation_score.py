"""Merge one module's cosmic-ray report into benchmarks/results/mutation.json.

Usage: mutation_score.py OUT.json REPORT.txt MODULE "TESTS"; the other modules' entries are kept,
and a run that stopped early says so (its fraction is over the mutants that completed).
"""
import collections
import datetime
import json
import os
import re
import sys

out, txt, mod, tests = sys.argv[1:]
text = open(txt).read()
runs = re.findall(r"core/([A-Za-z]+)\S* \d+\n.*?test outcome: TestOutcome\.(\w+)", text)
total = collections.Counter(op for op, _ in runs)
alive = collections.Counter(op for op, outcome in runs if outcome == "SURVIVED")
jobs = int(re.search(r"total jobs: (\d+)", text).group(1))
done = sum(1 for _, outcome in runs if outcome != "PENDING") if runs else 0
data = json.load(open(out)) if os.path.exists(out) else {}
entry = {
    "mutants": jobs,
    "completed": done,
    "surviving": sum(alive.values()),
    "tests": tests,
    "date": datetime.date.today().isoformat(),
    "surviving_by_operator": {op: f"{alive[op]} of {n}" for op, n in total.most_common()},
}
if done:
    entry["killed_fraction"] = round(1 - entry["surviving"] / done, 4)
if done < jobs:
    entry["note"] = f"stopped after {done} of {jobs} mutants; the fraction is over those completed"
data[mod] = entry
with open(out + ".tmp", "w") as f:
    json.dump(data, f, indent=1)
os.replace(out + ".tmp", out)
print(f"{mod}: {done - entry['surviving']} of {done} killed")
