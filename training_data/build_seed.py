"""Build ``training_data/seed.jsonl`` from the hand-authored content and templates in this folder.

Run ``python training_data/build_seed.py``; it is deterministic (fixed seeds, sorted inputs, no
dependence on hash order), so re-running regenerates the file byte for byte. It prints the counts
that README.md quotes.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import templates_code  # noqa: E402
import templates_everyday  # noqa: E402
import templates_fewshot  # noqa: E402
import templates_hard  # noqa: E402
import templates_language  # noqa: E402
import templates_multilingual  # noqa: E402
import templates_multiturn  # noqa: E402
import templates_reasoning  # noqa: E402
import templates_stakes  # noqa: E402
from authored import Row, load_authored  # noqa: E402
from dedup import keep_mask  # noqa: E402
from variation import vary  # noqa: E402

SEED = 20250214
OUTPUT = HERE / "seed.jsonl"
_GENERATORS = (
    templates_reasoning, templates_stakes, templates_code, templates_language, templates_multiturn,
    templates_everyday, templates_hard, templates_multilingual,
)


def collect_rows() -> list[Row]:
    """Authored rows plus every generator's rows; each generator has its own seeded stream."""
    rows = load_authored()
    for offset, module in enumerate(_GENERATORS, start=1):
        rows.extend(module.build(random.Random(SEED + offset)))
    # Few-shot frames wrap a sample of the rows above, so they come last.
    rows.extend(templates_fewshot.build(random.Random(SEED + len(_GENERATORS) + 1), rows))
    return rows


def row_text(row: Row) -> str:
    return "\n".join(content for _, content in row.messages)


def finalise(rows: list[Row]) -> list[dict[str, Any]]:
    """Vary, shuffle, drop near-duplicates and number the rows."""
    rng = random.Random(SEED)
    varied = [vary(rng, row) for row in rows]
    rng.shuffle(varied)
    mask = keep_mask([row_text(row) for row in varied])
    kept = [row for row, keep in zip(varied, mask, strict=True) if keep]
    return [
        {
            "id": f"seed-{index:05d}",
            "messages": [{"role": role, "content": content} for role, content in row.messages],
            "domain": row.domain,
            "task_type": row.task_type,
            "language": row.language,
            "difficulty": row.difficulty,
            "stakes": row.stakes,
        }
        for index, row in enumerate(kept, start=1)
    ]


def _table(title: str, counter: Counter[str], total: int) -> list[str]:
    lines = [f"| {title} | rows | share |", "|---|---:|---:|"]
    for key, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {key} | {count} | {count / total:.1%} |")
    return lines


def summary(records: list[dict[str, Any]], dropped: int) -> str:
    """Markdown tables of the counts per domain, language and label (pasted into README.md)."""
    total = len(records)
    labels = Counter(f"difficulty={r['difficulty']} stakes={r['stakes']}" for r in records)
    multi = sum(1 for r in records if sum(1 for m in r["messages"] if m["role"] == "user") > 1)
    system = sum(1 for r in records if r["messages"][0]["role"] == "system")
    hard = sum(int(r["difficulty"]) for r in records)
    risky = sum(int(r["stakes"]) for r in records)
    lines = [
        f"rows: {total} (near-duplicates dropped: {dropped})",
        f"difficulty=1: {hard} ({hard / total:.1%}); stakes=1: {risky} ({risky / total:.1%})",
        f"multi-turn rows: {multi} ({multi / total:.1%}); rows with a system prompt: {system}",
        "",
        *_table("labels", labels, total),
        "",
        *_table("language", Counter(str(r["language"]) for r in records), total),
        "",
        *_table("domain", Counter(str(r["domain"]) for r in records), total),
    ]
    return "\n".join(lines)


def main() -> None:
    rows = collect_rows()
    records = finalise(rows)
    with OUTPUT.open("w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n")
    print(summary(records, len(rows) - len(records)))


if __name__ == "__main__":
    main()
