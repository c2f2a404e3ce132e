"""proofs_checks: every theoretical claim the library relies on, as a falsifiable property test.

Each module states one claim (statement and source in its docstring), draws instances that satisfy its
assumptions with hypothesis, computes both sides, and returns the slack; negative controls show the check can
fail.  ``python -m proofs_checks`` runs them all and writes a Markdown report with figures.
"""
from importlib import import_module

try:
    from .framework import (REGISTRY, Claim, ClaimResult, Control, Outcome, run_claim, run_claim_limited,
                            run_control)
except ModuleNotFoundError as e:  # hypothesis is a test extra: say so in one line instead of a traceback
    if e.name != "hypothesis":
        raise
    MISSING = "hypothesis"
    INSTALL_HINT = ("proofs_checks needs hypothesis: pip install hypothesis "
                    "(or the test extra: pip install 'groupsparse[test]')")
else:
    MISSING = None

MODULES = [
    "identity_mask_group_lasso",
    "lemma_2_1_exp_mask",
    "lemma_2_2_l1_mask",
    "lemma_2_3_powerprop",
    "lemma_2_4_subadditive",
    "lemma_2_5_one_sparse",
    "theorem_1_1_unique_sparse_min",
    "axiotis_yasuda_threshold",
    "theorem_b3_algorithm2",
    "greedy_submodularity_ratio",
    "rsc_implies_weak_submodularity",
    "iht_guarantee",
    "arht_guarantee",
    "mcp_scad_orthonormal",
    "group_lasso_kkt_lambda_max",
    "duality_gap",
    "penalty_prox",
    "penalty_consistency",
    "selection_steps",
    "selection_bound",
    "solver_certificate",
]


def load_all():
    """Import every claim module (each registers its claims); returns the registry."""
    if MISSING:
        raise ModuleNotFoundError(INSTALL_HINT, name=MISSING)
    import importlib.util
    for m in MODULES:
        if importlib.util.find_spec(f"{__name__}.{m}") is not None:
            import_module(f"{__name__}.{m}")
    return REGISTRY


__all__ = ["REGISTRY", "Claim", "ClaimResult", "Control", "Outcome", "run_claim", "run_claim_limited", "run_control",
           "load_all", "MODULES"]
