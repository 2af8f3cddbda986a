"""Merge one module's cosmic-ray report into benchmarks/results/mutation.json.

Usage: mutation_score.py OUT.json REPORT.txt MODULE "TESTS"; the other modules' entries are kept,
and a run that stopped early says so (its fraction is over the mutants that completed). A sampled
run (``SAMPLE=K .ci/mutation``) reports the kill rate of its sample with a 95 % Wilson interval.
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
skipped = len(re.findall(r"worker outcome: WorkerOutcome\.SKIPPED", text))
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
if skipped:
    entry["sampled"] = jobs - skipped
    if done:
        # Wilson score interval of the kill rate (z = 1.96), for the module's whole mutant population
        p, n, z = entry["killed_fraction"], done, 1.96
        c = (p + z * z / (2 * n)) / (1 + z * z / n)
        h = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
        entry["killed_fraction_95ci"] = [round(c - h, 4), round(c + h, 4)]
    if done < jobs - skipped:
        entry["note"] = f"stopped after {done} of the {jobs - skipped} sampled mutants"
elif done < jobs:
    entry["note"] = f"stopped after {done} of {jobs} mutants; the fraction is over those completed"
data[mod] = entry
with open(out + ".tmp", "w") as f:
    json.dump(data, f, indent=1)
os.replace(out + ".tmp", out)
print(f"{mod}: {done - entry['surviving']} of {done} killed"
      + (f" (a sample of {jobs} mutants; 95 % interval {entry['killed_fraction_95ci']})" if skipped and done else ""))
