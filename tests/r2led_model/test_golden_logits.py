"""Golden logits: every model and R2LED variant of `test_models`, built at a fixed seed, gives the same
logits on a fixed batch as when `golden_logits.json` was written. A refactor that must not change what a
model computes (moving code, splitting modules, renaming parameters) keeps this test green; a change
that means to (a new default, a fixed bug) rewrites the file on purpose and says why in its commit:

    python -m tests.r2led_model.test_golden_logits --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.r2led_model.test_models import VARIANTS, batch_of, make

GOLDEN = Path(__file__).with_name("golden_logits.json")
ROWS = 6
NOISE = 0.3
# Float sums may round differently on another CPU's vector units; a real change moves logits far more.
TOLERANCE = 1e-4


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter moved by fixed noise (in name order), padding rows kept at zero: at its small
    initialisation a model's logits barely depend on its inputs, so a broken input path would hide."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters()):
            parameter.add_(torch.randn(parameter.shape, generator=generator) * NOISE)
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
    return model


def logits_of(variant: str) -> list[float]:
    model = trained_like(make(variant, seed=0)).eval()
    with torch.no_grad():
        return [round(float(v), 6) for v in model(batch_of(ROWS, seed=11))]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_logits_match_the_golden_file(variant):
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert variant in golden, f"{variant} has no golden logits: run `python -m {__name__} --write`"
    assert logits_of(variant) == pytest.approx(golden[variant], abs=TOLERANCE)


def test_the_golden_file_holds_no_variant_that_is_gone():
    assert set(json.loads(GOLDEN.read_text(encoding="utf-8"))) == set(VARIANTS)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: python -m {__spec__.name} --write")
    GOLDEN.write_text(json.dumps({v: logits_of(v) for v in sorted(VARIANTS)}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
