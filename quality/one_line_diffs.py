"""Print each non-killed mutant of a quality/mutation_NAME.txt report as one line: id | status | - old | + new."""
import re
import sys

for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read()
    text = text.split("## status counts", 1)[-1]
    for block in re.split(r"^## (?=pyro_noisevae\.)", text, flags=re.M)[1:]:
        lines = block.splitlines()
        name = lines[0].strip()
        status = next((ln.rsplit(": ", 1)[-1] for ln in lines[1:] if ln.startswith("# ")), "?")
        minus = [ln[1:].strip() for ln in lines if ln.startswith("-") and not ln.startswith("---")]
        plus = [ln[1:].strip() for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
        short = name.split(".")[-1].replace("xǁ", "").replace("ǁ", ".").replace("__mutmut_", "#")
        short = short[2:] if short.startswith("x_") else short
        print(f"{short} | {status} | `{' / '.join(minus)}` → `{' / '.join(plus)}`")
