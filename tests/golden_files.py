"""Golden-text comparison of a generated project (A2QHLS_REGEN_GOLDEN=1 rewrites the golden files)."""
import os
from pathlib import Path

GOLDEN_ROOT = Path(__file__).parent / "golden"
REGEN = os.environ.get("A2QHLS_REGEN_GOLDEN") == "1"


def assert_matches_golden(files: dict, name: str) -> None:
    """Every rendered file equals ``tests/golden/<name>/<file>``, and no golden file is missing or extra."""
    golden = GOLDEN_ROOT / name
    if REGEN:
        for rel, text in files.items():
            p = golden / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
    stored = sorted(str(p.relative_to(golden)) for p in golden.rglob("*") if p.is_file())
    assert stored == sorted(files)
    for rel, text in files.items():
        assert (golden / rel).read_text() == text, f"{rel} differs from the golden file (A2QHLS_REGEN_GOLDEN=1 to update)"
