"""Build the per-module tables of quality/README.md from quality/mutation_NAME.txt and quality/classification_NAME.py.

    .venv/bin/python quality/make_report.py handlers iwae_surrogate ...   > quality/_tables.md
"""
import importlib.util
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def entries(name):
    text = (HERE / f"mutation_{name}.txt").read_text(encoding="utf-8")
    head, _, tail = text.partition("## status counts")
    status = {}
    for ln in head.splitlines():
        m = re.match(r"\s+(pyro_noisevae\.\S+): (.+)$", ln)
        if m:
            status[m.group(1)] = m.group(2).strip()
    diffs = {}
    for block in re.split(r"^## (?=pyro_noisevae\.)", tail, flags=re.M)[1:]:
        lines = block.splitlines()
        minus = [ln[1:].strip() for ln in lines if ln.startswith("-") and not ln.startswith("---")]
        plus = [ln[1:].strip() for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
        diffs[lines[0].strip()] = (" / ".join(minus), " / ".join(plus))
    return status, diffs


def short(full):
    s = full.rsplit(".", 1)[-1].replace("xǁ", "").replace("ǁ", ".").replace("__mutmut_", "#")
    return s[2:] if s.startswith("x_") else s


def load(name):
    path = HERE / f"classification_{name}.py"
    if not path.exists():
        return {}, {}, None
    spec = importlib.util.spec_from_file_location(f"cls_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.C, getattr(mod, "PREFIX", {}), getattr(mod, "classify", None)


def md(s):
    return s.replace("|", "\\|")


for name in sys.argv[1:]:
    status, diffs = entries(name)
    C, PREFIX, rule = load(name)
    counts = Counter(status.values())
    total = len(status)
    killed = counts.get("killed", 0)
    checked = total - counts.get("not checked", 0)
    classes = Counter()
    rows = []
    for full, st in status.items():
        if st in ("killed", "not checked"):
            continue
        sid = short(full)
        old, new = diffs.get(full, ("?", "?"))
        cls = (C.get(sid) or next((v for k, v in PREFIX.items() if sid.startswith(k + "#")), None)
               or (rule and rule(sid, old, new)) or ("not classified", "time box ran out before this one was read"))
        classes["equivalent" if cls[0].startswith("equivalent") else cls[0].split(" (")[0]] += 1
        rows.append(f"| `{sid}` | {st} | `{md(old)}` → `{md(new)}` | **{cls[0]}**: {md(cls[1])} |")
    eq = classes.get("equivalent", 0)
    print(f"### {name}\n")
    print(f"mutants {total}, killed {killed}, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "killed")
          + f" — **score {100 * killed / checked:.1f} %** (killed / {'all' if checked == total else 'checked'}); "
          f"{100 * killed / (checked - eq):.1f} % with the "
          f"{eq} equivalent mutants left out. Survivors by class: "
          + ", ".join(f"{k} {v}" for k, v in sorted(classes.items())) + "\n")
    print("| mutant | status | diff | classification |\n|---|---|---|---|")
    print("\n".join(rows) + "\n")
