"""Mutation testing of the numerical core: does ``proofs_checks`` (and do the related tests) catch injected bugs?

    python benchmarks/mutation.py [--n 130] [--seed 0] [--out benchmarks/results/mutation.json]

A small AST mutator (mutmut and cosmic-ray assume one test command per project and mutate in place; here the shared
checkout must never be touched): every mutant is one small edit of one of

    groupsparse/penalties.py, groupsparse/problem.py, groupsparse/selection/*.py, groupsparse/solvers/*.py

Operators: arithmetic swaps (+ <-> -, * <-> /), comparison flips (< <-> >, <= <-> >=, == <-> !=) and boundary
shifts (< <-> <=, > <-> >=), numeric constants (c -> c + 1, c * 2, 0), min <-> max (also np.minimum/np.maximum,
np.min/np.max, argmin/argmax), and <-> or, return-value negation (-x, or ``not`` for a boolean expression), and
dropping one statement of a small body (<= 3 statements -> ``pass``).  Constants below 1e-6 in magnitude
(tolerances, division guards) get c -> c + 1 only: doubling or zeroing a 1e-12 tolerance or a 1e-300 guard is not
observable in floating point, so those mutants would be equivalent by construction.  Not mutated: strings and docstrings,
``__repr__``, ``if verbose:`` bodies and the arguments of ``raise`` (presentation, not numerics).

The candidates of all files are enumerated in a fixed order and ``--n`` of them are drawn with ``random.Random(seed)``.
The repository (``git archive HEAD``: committed code only, never other people's work in progress) is unpacked once
into a scratch directory placed first on PYTHONPATH; each mutant rewrites one file there, runs, and restores it.
Per mutant, with a time limit each (a timeout counts as killed, recorded as "timeout"):

 (a) ``python -m proofs_checks`` in a fast configuration (few examples, no negative controls, stop at the first
     claim that fails) on the claims related to the mutated file;
 (b) only if (a) did not kill it: every test file that exercises the mutated file (``TESTS``: its own tests, input
     validation, reliability regressions, the fuzz suites and tests/test_mutation_killers_*.py; pytest -x), plus the
     library-facing tests of test_proofs_checks.py.  Files no claim covers (sequential_obs.py, obs.py) go to (b)
     directly.

A check of the harness itself: an obviously fatal mutant (GroupLasso.prox_scalar returning 0) must be killed by
step (b) alone (it is: tests/test_penalties.py::test_prox_is_global_minimiser, 6 s).  Until 4337e12 step (b)'s
``-k`` filter kept only 9 tests of test_proofs_checks.py and none of the related files.

``--recheck`` reruns survivors (and drawn mutants that never ran) with the proofs_checks/ and tests/ of a later
commit on the same drawn library code, after a baseline of those newer checks on the unmutated drawn code (what
already fails there, e.g. tests of features added since, is left out); the summary's ``final`` block folds the
rechecks in, ``main_run`` is the drawn commit's own checks.

Results are written after every mutant to ``--out`` (resumable: finished mutants of the same configuration are
skipped), with the score overall, per category and for proofs_checks alone, and the surviving mutants.
Run it alone, under ``nice``: it is a benchmark, not part of CI.
"""
from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["groupsparse/penalties.py", "groupsparse/problem.py", "groupsparse/selection", "groupsparse/solvers"]

# claims of proofs_checks related to each mutated file (name substrings, cheap ones first: --fail-fast)
CLAIMS = {
    "penalties": ["penalty_prox", "penalty_consistency", "mcp_scad_orthonormal", "lemma_2_5", "lemma_2_4",
                  "solver_certificate", "theorem_1_1"],
    "problem": ["penalty_consistency", "penalty_prox", "solver_certificate", "duality_gap", "selection_steps.swap",
                "mcp_scad_orthonormal.solver", "group_lasso_kkt"],
    "solvers": ["solver_certificate", "duality_gap", "group_lasso_kkt", "mcp_scad_orthonormal.solver",
                "penalty_consistency", "axiotis_yasuda", "theorem_1_1"],
    "selection": ["selection_steps", "selection_bound", "greedy_submodularity_ratio.group_omp",
                  "rsc_implies_weak", "iht_guarantee.descent", "theorem_b3"],
    "bnb": ["selection_bound"],
    # layer-wise OBS pruning (seqobs / sparsegpt / wanda; group OBS backward elimination): outside the theory
    # catalogue, no claim covers them; their tests do (an empty list skips step (a))
    "sequential_obs": [],
    "obs": [],
}
# every test file that exercises the mutated file's code (cheap and targeted first: pytest -x stops at the first
# failure); input validation (test_bad_input) and the reliability regressions included
_CORE = ["tests/test_bad_input.py", "tests/test_reliability_core.py"]
_KILL_CORE, _KILL_SEL = "tests/test_mutation_killers_core.py", "tests/test_mutation_killers_selection.py"
TESTS = {
    "penalties": [_KILL_CORE, "tests/test_penalties.py", "tests/test_solvers.py", *_CORE, "tests/test_fuzz_core.py"],
    "problem": [_KILL_CORE, "tests/test_solvers.py", "tests/test_selection.py", "tests/test_penalties.py", *_CORE,
                "tests/test_fuzz_core.py"],
    "solvers": [_KILL_CORE, "tests/test_solvers.py", *_CORE, "tests/test_fuzz_core.py"],
    "selection": [_KILL_SEL, "tests/test_selection.py", "tests/test_selection_gram.py", "tests/test_fuzz_inputs.py",
                  *_CORE, "tests/test_bnb.py", "tests/test_fuzz_core.py"],
    "bnb": ["tests/test_bnb.py", _KILL_SEL, "tests/test_selection.py", *_CORE],
    "sequential_obs": ["tests/test_mutation_killers_oneshot.py", "tests/test_sequential_obs.py",
                       "tests/test_bad_input.py"],
    "obs": ["tests/test_selection_obs.py", "tests/test_selection_gram.py", "tests/test_bad_input.py"],
}
# "prox/penalty/bound" category (the acceptance figure for proofs_checks alone): these files and Problem methods
PPB_FILES = ("groupsparse/penalties.py", "groupsparse/selection/bound.py")
PPB_FUNCS = ("kkt", "duality_gap", "_dual_point", "penalty_value", "objective", "prox", "fixpoint_scores")

SWAP_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
FLIP_CMP = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
EDGE_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
MINMAX = {"min": "max", "max": "min", "minimum": "maximum", "maximum": "minimum", "argmin": "argmax",
          "argmax": "argmin", "amin": "amax", "amax": "amin", "nanmin": "nanmax", "nanmax": "nanmin"}


# ---------------------------------------------------------------------------------------------- mutants
def _key(path):
    p = path.replace("\\", "/")
    for k in ("bnb", "sequential_obs", "obs", "penalties", "problem", "solvers", "selection"):
        if f"/{k}" in p:
            return k
    raise ValueError(path)


class _Collector(ast.NodeVisitor):
    """Every mutation site of one module, as (line, col, end_line, end_col, replacement text, operator, func)."""

    def __init__(self, src):
        self.src, self.out, self.func = src, [], []
        self.lines = src.splitlines(keepends=True)

    def _seg(self, node):
        return ast.get_source_segment(self.src, node)

    def _add(self, node, new_text, op):
        self.out.append(dict(line=node.lineno, col=node.col_offset, end_line=node.end_lineno,
                             end_col=node.end_col_offset, original=self._seg(node), mutated=new_text, operator=op,
                             function=".".join(self.func)))

    def visit_FunctionDef(self, node):
        if node.name == "__repr__":
            return
        self.func.append(node.name)
        self._small_body(node.body)
        for s in node.body:
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)):
                self.visit(s)
        self.func.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.func.append(node.name)
        for s in node.body:
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)):
                self.visit(s)
        self.func.pop()

    def visit_If(self, node):
        if isinstance(node.test, ast.Name) and node.test.id == "verbose":
            return  # printing only
        self._small_body(node.body)
        self._small_body(node.orelse)
        self.generic_visit(node)

    def visit_For(self, node):
        self._small_body(node.body)
        self.generic_visit(node)

    visit_While = visit_For

    def visit_Raise(self, node):
        return  # error messages: presentation

    def visit_JoinedStr(self, node):
        return

    def visit_arguments(self, node):
        for d in node.defaults + node.kw_defaults:  # default values are mutated like any constant
            if d is not None:
                self.visit(d)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)

    def _small_body(self, body):
        stmts = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        if 1 <= len(stmts) <= 3:
            for s in stmts:
                if isinstance(s, (ast.Assign, ast.AugAssign, ast.Expr, ast.Return, ast.Break, ast.Continue)):
                    self._add(s, "pass", "drop statement")

    def visit_BinOp(self, node):
        if type(node.op) in SWAP_BIN:
            m = copy.copy(node)
            m.op = SWAP_BIN[type(node.op)]()
            self._replace_op(node, m, "arithmetic swap")
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        if type(node.op) in SWAP_BIN:
            m = copy.copy(node)
            m.op = SWAP_BIN[type(node.op)]()
            self._add(node, ast.unparse(m), "arithmetic swap")
        self.generic_visit(node)

    def _replace_op(self, node, m, op):
        # keep the operands' original text (and comments/formatting inside them): only the operator changes
        left, right = self._seg(node.left), self._seg(node.right)
        if left is None or right is None:
            return
        whole = self._seg(node)
        a = whole.find(left) + len(left)
        b = whole.rfind(right)
        mid = whole[a:b]
        sym = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
        old_sym, new_sym = sym[type(node.op)], sym[type(m.op)]
        if mid.count(old_sym) != 1:
            return
        self._add(node, whole[:a] + mid.replace(old_sym, new_sym) + whole[b:], op)

    def visit_Compare(self, node):
        if len(node.ops) == 1:
            t = type(node.ops[0])
            for table, name in ((FLIP_CMP, "comparison flip"), (EDGE_CMP, "comparison boundary")):
                if t in table:
                    m = copy.copy(node)
                    m.ops = [table[t]()]
                    self._add(node, ast.unparse(m), name)
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        m = copy.copy(node)
        m.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._add(node, ast.unparse(m), "and/or swap")
        self.generic_visit(node)

    def visit_Call(self, node):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else None)
        if name in MINMAX:
            if isinstance(f, ast.Name):
                self._add(f, MINMAX[name], "min/max swap")
            else:
                seg = self._seg(f)
                self._add(f, seg[: seg.rfind(name)] + MINMAX[name], "min/max swap")
        self.generic_visit(node)

    def visit_Constant(self, node):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return
        ops = ((v + 1, "constant c+1"), (v * 2, "constant c*2"), (0, "constant 0"))
        if 0 < abs(v) < 1e-6:  # a tolerance or a division guard: doubling or zeroing 1e-12 / 1e-300 is not
            ops = ops[:1]      # observable in floating point, c + 1 (a tolerance of ~1) is
        for new, op in ops:
            if new != v:
                self._add(node, repr(type(v)(new)) if not isinstance(new, float) or new == new else repr(new), op)

    def visit_Return(self, node):
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            v = node.value
            boolean = isinstance(v, (ast.Compare, ast.BoolOp)) or (isinstance(v, ast.UnaryOp) and
                                                                    isinstance(v.op, ast.Not))
            seg = self._seg(v)
            if seg is not None and not isinstance(v, ast.Tuple):
                self._add(v, f"(not ({seg}))" if boolean else f"(-({seg}))", "return negation")
        self.generic_visit(node)


def candidates(root):
    files = []
    for t in TARGETS:
        p = root / t
        files += sorted(p.glob("*.py")) if p.is_dir() else [p]
    out = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        if f.name == "__init__.py" and rel.startswith("groupsparse/solvers"):
            continue  # registry only
        src = f.read_text()
        c = _Collector(src)
        c.visit(ast.parse(src))
        for m in c.out:
            m["file"] = rel
            if m["original"] is None:
                continue
            out.append(m)
    out.sort(key=lambda m: (m["file"], m["line"], m["col"], m["operator"], m["mutated"]))
    for i, m in enumerate(out):
        m["uid"] = hashlib.sha1(json.dumps([m[k] for k in ("file", "line", "col", "end_line", "end_col",
                                                            "operator", "mutated")]).encode()).hexdigest()[:12]
        m["category"] = category(m)
    return out


def category(m):
    if m["file"] in PPB_FILES or (m["file"] == "groupsparse/problem.py" and m["function"].split(".")[-1] in PPB_FUNCS):
        return "prox/penalty/bound"
    return {"penalties": "penalty", "problem": "problem", "solvers": "solver", "selection": "selection",
            "bnb": "selection", "sequential_obs": "selection", "obs": "selection"}[_key(m["file"])]


def apply(src, m):
    lines = src.splitlines(keepends=True)
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln))
    # ast offsets are in UTF-8 bytes; the files are ASCII in the mutated regions (checked by compile below)
    a = starts[m["line"] - 1] + _char_col(lines[m["line"] - 1], m["col"])
    b = starts[m["end_line"] - 1] + _char_col(lines[m["end_line"] - 1], m["end_col"])
    assert src[a:b] == m["original"], (m["file"], m["line"], src[a:b], m["original"])
    new = src[:a] + m["mutated"] + src[b:]
    compile(new, m["file"], "exec")
    return new


def _char_col(line, byte_col):
    return len(line.encode()[:byte_col].decode(errors="ignore"))


# ---------------------------------------------------------------------------------------------- running
def snapshot(work, commit="HEAD", paths=("groupsparse", "proofs_checks", "tests", "pyproject.toml")):
    """Unpack ``paths`` of the committed repository at ``commit`` (git archive) into ``work``; returns the full
    commit id."""
    commit = subprocess.run(["git", "rev-parse", commit], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    data = subprocess.run(["git", "archive", commit, *paths], cwd=ROOT, check=True, capture_output=True).stdout
    for p in paths:  # files deleted since: gone from the copy too
        if p != "pyproject.toml":
            shutil.rmtree(Path(work) / p, ignore_errors=True)
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(work)
    return commit


def _env(work):
    env = dict(os.environ, PYTHONPATH=str(work), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    return env


def run_cmd(cmd, work, timeout):
    t0 = time.perf_counter()
    p = subprocess.Popen(["nice", "-n", "10", *cmd], cwd=work, env=_env(work), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        # the whole session: proofs_checks' forked claim workers and pytest's children too, not just the parent
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = p.communicate()
        rc = "timeout"
    return rc, time.perf_counter() - t0, out or ""


def proofs_cmd(key, args, skip=()):
    return [sys.executable, "-m", "proofs_checks", "--examples", str(args.examples), "--seed", "0", "--no-controls",
            "--fail-fast", "--no-figures", "--time-limit", str(args.claim_limit), "--only", ",".join(CLAIMS[key]),
            *(["--skip", ",".join(skip)] if skip else []), "--out", "pc_report"]


def _failed_claims(work):
    try:
        return [r["claim"] for r in json.loads((work / "pc_report" / "summary.json").read_text())
                if r["verdict"] not in ("holds", "informational", "INFO: below bound")]
    except (OSError, ValueError):
        return []


def tests_cmd(key, deselect=(), first_fail=True):
    # test_proofs_checks.py last, only its tests that exercise the library: its per-claim test repeats step (a)
    # and its runner/CLI tests do not call groupsparse.  -k filters every collected file, so it must let the other
    # files' tests through (it once read "injected or ...": only 9 tests of test_proofs_checks.py ran, none of
    # the related files' tests)
    return [sys.executable, "-m", "pytest", "-q", *(["-x"] if first_fail else []), "-p", "no:cacheprovider",
            "-rf", *[f for f in TESTS[key] if f not in deselect], "tests/test_proofs_checks.py", "-k", PC_TESTS,
            *[a for d in deselect if "::" in d for a in ("--deselect", d)]]


PC_TESTS = "not test_proofs_checks.py or injected or counterexamples or ompr_axiotis"


def _uncollectable(out):
    """Test files that fail to import (pytest's "ERROR tests/x.py"): left out whole (--ignore)."""
    return sorted({ln.split()[1] for ln in out.splitlines()
                   if ln.startswith("ERROR ") and len(ln.split()) > 1 and "::" not in ln.split()[1]})


def _failed_tests(out):
    return sorted({ln.split()[1] for ln in out.splitlines() if ln.startswith("FAILED ") and "::" in ln})


def _first_failure(out, kind):
    for line in out.splitlines():
        if kind == "pc" and (": VIOLATED" in line or ": ERROR" in line or ": TIMED OUT" in line):
            return line.split("] ", 1)[-1][:200]
        if kind == "tests" and (line.startswith("FAILED") or line.startswith("ERROR")):
            return line[:200]
    return out.strip().splitlines()[-1][:200] if out.strip() else ""


def run_mutant(m, work, args, base_skip, base_deselect):
    path = work / m["file"]
    orig = path.read_text()
    key = _key(m["file"])
    rec = {k: m[k] for k in ("uid", "file", "line", "function", "operator", "category", "original", "mutated")}
    try:
        path.write_text(apply(orig, m))
        if CLAIMS[key]:
            rc, sec, out = run_cmd(proofs_cmd(key, args, base_skip.get(key, ())), work, args.pc_timeout)
        else:  # no claim covers this file: only the tests can kill it
            rc, sec, out = 0, 0.0, "no related claim"
        rec["proofs_checks"] = dict(rc=rc, seconds=round(sec, 1), first_failure=_first_failure(out, "pc")
                                    if rc != 0 else "")
        if rc != 0:
            rec["status"] = "timeout" if rc == "timeout" else "killed"
            rec["killed_by"] = "proofs_checks"
            return rec
        rc, sec, out = run_cmd(tests_cmd(key, base_deselect.get(key, ())), work, args.tests_timeout)
        rec["tests"] = dict(rc=rc, seconds=round(sec, 1), first_failure=_first_failure(out, "tests") if rc else "")
        if rc == 0:
            rec["status"] = "survived"
        else:
            rec["status"] = "timeout" if rc == "timeout" else "killed"
            rec["killed_by"] = "tests"
        return rec
    finally:
        path.write_text(orig)


def baseline(work, args, keys):
    """The unmutated code with the checks in ``work``: per file key, the claims and tests that already fail (left
    out of every mutant's run: they could not tell a mutant apart)."""
    base = {}
    for key in keys:
        skip, rc, sec = [], 0, 0.0
        for _ in range(3 if CLAIMS[key] else 0):
            rc, sec, o = run_cmd(proofs_cmd(key, args, skip), work, args.pc_timeout)
            if rc == 0:
                break
            new = _failed_claims(work)
            if not new or rc == "timeout":
                break
            skip += new
        rc2, sec2, o2 = run_cmd(tests_cmd(key, first_fail=False), work, args.tests_timeout)
        broken = _uncollectable(o2)  # e.g. newer tests of a module the drawn commit does not have yet
        if broken:
            rc2, sec2, o2 = run_cmd(tests_cmd(key, broken, first_fail=False), work, args.tests_timeout)
        base[key] = dict(proofs_checks=dict(rc=rc, seconds=round(sec, 1), skipped_failing_claims=skip),
                         tests=dict(rc=rc2, seconds=round(sec2, 1),
                                    deselected_failing_tests=broken + _failed_tests(o2)))
        print(f"baseline {key}: {base[key]}", file=sys.stderr, flush=True)
    return base


def _scores(recs, explained):
    def score(rs):
        n = len(rs)
        k = sum(r["status"] in ("killed", "timeout") for r in rs)
        return dict(mutants=n, killed=k, score=round(k / n, 4) if n else None)

    def pc_score(rs):
        n = len(rs)
        k = sum(r.get("killed_by") == "proofs_checks" for r in rs)
        return dict(mutants=n, killed=k, score=round(k / n, 4) if n else None)

    cats = sorted({r["category"] for r in recs})
    surv = [r for r in recs if r["status"] == "survived"]
    return dict(
        overall=score(recs),
        # an explanation counts only while the mutant survives (a later check that kills it proves it was not)
        overall_excluding_equivalent=score([r for r in recs if not (r["status"] == "survived" and
                                                                    r["uid"] in explained)]),
        proofs_checks_alone=pc_score(recs),
        per_category={c: dict(combined=score([r for r in recs if r["category"] == c]),
                              proofs_checks_alone=pc_score([r for r in recs if r["category"] == c]))
                      for c in cats},
        timeouts=sum(r["status"] == "timeout" for r in recs),
        survivors=len(surv), survivors_explained_equivalent=len([r for r in surv if r["uid"] in explained]),
        survivors_unexplained=len([r for r in surv if r["uid"] not in explained]),
    )


def effective(recs, rechecked=None):
    """Each mutant's latest verdict: a survivor of the main run that was rechecked against later checks counts
    with the recheck's result (the library code mutated is the same; only proofs_checks/ and tests/ are newer)."""
    rechecked = rechecked or {}
    ran = {r["uid"] for r in recs}
    return ([rechecked.get(r["uid"], r) if r["status"] == "survived" else r for r in recs] +
            [v for u, v in rechecked.items() if u not in ran])  # drawn, first run by a recheck


def summarize(recs, explained, rechecked=None):
    """``main_run``: the verdicts with the checks of the drawn commit; ``final``: with the rechecks folded in."""
    out = dict(main_run=_scores(recs, explained), final=_scores(effective(recs, rechecked), explained))
    out["survivors_killed_by_new_checks"] = out["main_run"]["survivors"] - out["final"]["survivors"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=120, help="number of mutants to draw")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draw")
    ap.add_argument("--examples", type=int, default=8, help="proofs_checks instances per claim")
    ap.add_argument("--claim-limit", type=float, default=25.0,
                    help="seconds per claim inside proofs_checks (a claim at 8 examples takes <= 5 s unmutated)")
    ap.add_argument("--pc-timeout", type=float, default=150.0, help="seconds for the proofs_checks run of a mutant")
    ap.add_argument("--tests-timeout", type=float, default=200.0, help="seconds for the test run of a mutant")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/mutation.json"))
    ap.add_argument("--work", default=None, help="scratch directory (default: a new temporary one)")
    ap.add_argument("--list", action="store_true", help="print the drawn mutants and exit")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated baseline run")
    ap.add_argument("--recheck", default=None, metavar="UIDS",
                    help="rerun these mutants (comma-separated uids; '' = every survivor) with the proofs_checks/ "
                         "and tests/ of --checks-from, recording them under 'rechecked'")
    ap.add_argument("--checks-from", default="HEAD", help="commit whose checks --recheck uses")
    ap.add_argument("--summarize-only", action="store_true",
                    help="only recompute the summary of --out (explanations of equivalent mutants: its 'equivalent' "
                         "map, uid -> why; notes on the other survivors: its 'notes' map)")
    args = ap.parse_args(argv)
    for name in ("n", "examples"):
        if getattr(args, name) < 1:
            ap.error(f"--{name}: must be >= 1")

    out = Path(args.out)
    state = json.loads(out.read_text()) if out.exists() else {}
    cfg_now = dict(n=args.n, seed=args.seed, examples=args.examples, claim_limit=args.claim_limit,
                   pc_timeout=args.pc_timeout, tests_timeout=args.tests_timeout, targets=TARGETS)
    old_cfg = {k: v for k, v in state.get("config", {}).items() if k in cfg_now}
    # resuming the same configuration: the same commit, so the same candidates and the same draw
    commit = state["config"]["commit"] if old_cfg == cfg_now and "commit" in state.get("config", {}) else "HEAD"
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="groupsparse_mutation_"))
    work.mkdir(parents=True, exist_ok=True)
    commit = snapshot(work, commit)
    allm = candidates(work)
    drawn = random.Random(args.seed).sample(allm, min(args.n, len(allm)))
    if args.list:
        for m in drawn:
            print(f"{m['uid']} {m['file']}:{m['line']} [{m['category']}] {m['operator']}: {m['original']!r} -> "
                  f"{m['mutated']!r}")
        print(f"{len(drawn)} of {len(allm)} candidates")
        return 0
    config = dict(n=args.n, seed=args.seed, examples=args.examples, claim_limit=args.claim_limit,
                  pc_timeout=args.pc_timeout, tests_timeout=args.tests_timeout, commit=commit,
                  n_candidates=len(allm), targets=TARGETS)
    same = {k: v for k, v in state.get("config", {}).items() if k != "commit"} == \
        {k: v for k, v in config.items() if k != "commit"}
    done = {r["uid"]: r for r in state.get("mutants", [])} if same else {}
    explained = state.get("equivalent", {})
    cmd = "python benchmarks/mutation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    state = dict(command=state.get("command", cmd) if same and args.summarize_only else cmd,
                 config=config, started=state.get("started") if same else time.strftime("%Y-%m-%d %H:%M:%S"),
                 claims=CLAIMS, tests=dict(TESTS, test_proofs_checks=PC_TESTS), equivalent=explained, baseline=state.get("baseline") if same else None,
                 mutants=[done[m["uid"]] for m in drawn if m["uid"] in done],
                 rechecked=state.get("rechecked", {}) if same else {},
                 recheck_baselines=state.get("recheck_baselines", {}) if same else {},
                 notes=state.get("notes", {}) if same else {})

    def save():
        state["summary"] = summarize(state["mutants"], explained, state.get("rechecked"))
        # the final survivors (rechecks folded in), each with its explanation (equivalent) or note; and the main
        # run's survivors that a recheck killed, with what killed them
        rechecked = state.get("rechecked") or {}
        state["survivors"] = [dict(uid=r["uid"], file=r["file"], line=r["line"], function=r["function"],
                                   operator=r["operator"], category=r["category"], original=r["original"],
                                   mutated=r["mutated"], equivalent=explained.get(r["uid"]),
                                   rechecked_with=r.get("checks_commit"), note=state["notes"].get(r["uid"]))
                              for r in effective(state["mutants"], rechecked) if r["status"] == "survived"]
        state["killed_on_recheck"] = [
            dict(uid=u, file=v["file"], line=v["line"], killed_by=v.get("killed_by"), checks_commit=v.get("checks_commit"),
                 first_failure=(v.get("tests") or v["proofs_checks"]).get("first_failure", ""))
            for u, v in rechecked.items() if v["status"] in ("killed", "timeout")]
        state["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(out)

    print(f"work dir {work}; commit {commit[:10]}; {len(allm)} candidates, {len(drawn)} drawn, "
          f"{len(state['mutants'])} already done", file=sys.stderr, flush=True)
    if not args.no_baseline and state["baseline"] is None and not args.summarize_only:
        # the unmutated code: claims and tests that already fail there are left out of every mutant's run (they
        # could not tell a mutant apart), and listed in the results
        base = baseline(work, args, list(CLAIMS))
        state["baseline"] = base
        save()
        bad = {k: v for k, v in base.items() if v["proofs_checks"]["rc"] != 0 or
               (v["tests"]["rc"] != 0 and not v["tests"]["deselected_failing_tests"])}
        if bad:
            print(f"baseline fails beyond what can be left out, stopping: {bad}", file=sys.stderr)
            return 2
    base = state["baseline"] or {}
    base_skip = {k: v["proofs_checks"]["skipped_failing_claims"] for k, v in base.items()}
    base_deselect = {k: v["tests"]["deselected_failing_tests"] for k, v in base.items()}
    if args.summarize_only:  # recompute the summary (e.g. after adding explanations of equivalent mutants)
        save()
        print(json.dumps(state["summary"], indent=1))
        return 0
    if args.recheck is not None:
        # the same mutants of the same library commit, against the checks (proofs_checks/, tests/) of a later
        # commit: "killed by a new check" for a survivor of the main run
        checks = snapshot(work, args.checks_from, paths=("proofs_checks", "tests"))
        # default: every survivor so far and the drawn mutants that never ran
        eff = {r["uid"]: r for r in effective(state["mutants"], state.get("rechecked"))}
        uids = [u for u in args.recheck.split(",") if u] or [m["uid"] for m in drawn if m["uid"] not in eff or
                                                             eff[m["uid"]]["status"] == "survived"]
        by_uid = {m["uid"]: m for m in drawn}
        re = state.setdefault("rechecked", {})
        # the newer checks on the unmutated library first: what already fails there is left out (as in the
        # main run's baseline)
        rb = state.setdefault("recheck_baselines", {})
        if checks not in rb:
            rb[checks] = baseline(work, args, sorted({_key(by_uid[u]["file"]) for u in uids}))
            save()
        rskip = {k: v["proofs_checks"]["skipped_failing_claims"] for k, v in rb[checks].items()}
        rdesel = {k: v["tests"]["deselected_failing_tests"] for k, v in rb[checks].items()}
        for u in uids:
            key = _key(by_uid[u]["file"])
            if key not in rb[checks]:
                rb[checks].update(baseline(work, args, [key]))
                save()
                rskip[key] = rb[checks][key]["proofs_checks"]["skipped_failing_claims"]
                rdesel[key] = rb[checks][key]["tests"]["deselected_failing_tests"]
            rec = run_mutant(by_uid[u], work, args, rskip, rdesel)
            rec["checks_commit"] = checks
            re[u] = rec
            save()
            print(f"recheck {u} {rec['file']}:{rec['line']} {rec['original']!r} -> {rec['mutated']!r}: "
                  f"{rec['status']}{' by ' + rec['killed_by'] if rec.get('killed_by') else ''} "
                  f"({(rec.get('tests') or rec['proofs_checks']).get('first_failure', '')})", file=sys.stderr,
                  flush=True)
        return 0
    t0 = time.perf_counter()
    for i, m in enumerate(drawn):
        if m["uid"] in done:
            continue
        rec = run_mutant(m, work, args, base_skip, base_deselect)
        state["mutants"].append(rec)
        save()
        s = state["summary"]["main_run"]["overall"]
        print(f"[{time.perf_counter() - t0:7.1f}s] {i + 1}/{len(drawn)} {m['file']}:{m['line']} {m['operator']} "
              f"{m['original']!r} -> {m['mutated']!r}: {rec['status']}"
              f"{' by ' + rec['killed_by'] if rec.get('killed_by') else ''}  (score {s['killed']}/{s['mutants']})",
              file=sys.stderr, flush=True)
    save()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(state["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
