"""The README's main command runs end to end (small setting) and writes its plot."""
import io
import subprocess
import sys

import numpy as np

from groupsparse import demo


def test_demo_runs_and_plots(tmp_path):
    out = tmp_path / "sub" / "path.png"
    buf = io.StringIO()
    res = demo.run(out=str(out), n_lambdas=8, cv=3, stream=buf)
    text = buf.getvalue()
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread
    img = imread(str(out))
    assert img.shape[0] > 200 and img.shape[1] > 400 and img[..., :3].std() > 0.05  # not a blank canvas
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    for label in ("group lasso", "group MCP"):
        r = res[label]
        est = r["est"]
        assert label in text and f"selected by {label}:" in text
        assert r["selected"] == [names[g] for g in est.support_] and len(r["selected"]) >= 1
        for name in r["selected"]:
            assert name in text
        assert est.lambda_ in est.lambdas_ and est.cv_scores_[est.best_index_] == np.max(est.cv_scores_)
        # bmi and s5 are the two strongest predictors of diabetes progression in this data set
        assert {"bmi", "s5"} <= set(r["selected"])
        assert 0.1 < r["test_r2"] < 0.8
        assert f"{r['test_r2']:.3f}" in text


def test_groups_are_orthonormal_per_feature():
    X = np.random.default_rng(0).normal(size=(200, 3))
    X[:, 1] = X[:, 1] > 0  # a binary column keeps one direction
    b = demo.GroupSplineBasis(n_knots=4).fit(X)
    Z = b.transform(X)
    assert list(b.groups_.sizes) == [5, 1, 5]
    for g in b.groups_:
        np.testing.assert_allclose(Z[:, g].T @ Z[:, g] / len(X), np.eye(len(g)), atol=1e-8)
        np.testing.assert_allclose(Z[:, g].mean(axis=0), 0, atol=1e-10)


def test_cli_help_and_out_option(tmp_path):
    r = subprocess.run([sys.executable, "-m", "groupsparse.demo", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "--out" in r.stdout
