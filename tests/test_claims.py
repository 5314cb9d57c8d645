"""optlab.claims: the verdict helper asserts, formats within the page width, and carries JSON."""
import json

import numpy as np
import pytest

from optlab import claims as C


def test_checks_pass_fail_and_margins():
    assert C.within("slope", [-0.5, -0.45], -0.6, -0.4).passed
    c = C.within("slope", [-0.5, -0.35], -0.6, -0.4)
    assert not c.passed and c.margin == pytest.approx(-0.05)
    assert C.at_least("zeros", 0.63, 0.5).margin == pytest.approx(0.13)
    assert C.at_most("ratio", 0.2, 1 / 3).passed
    assert C.is_true("all seeds", [True, True]).passed and not C.is_true("all seeds", [True, False]).passed
    assert "0.63" in C.at_least("zeros", 0.63, 0.5).line()


def test_claim_returns_a_verdict_and_raises_on_failure():
    ok = C.claim("P99", "a statement", [C.at_least("x", 2.0, 1.0)], seeds=[1, 2], sizes={"R": np.int64(10)},
                 rejects=["a wrong variant"], display=False)
    assert ok.passed and ok.status == "holds" and ok.sizes == {"R": 10} and C.LAST[-1] is ok
    d = json.loads(json.dumps(ok.to_dict()))
    assert d["checks"][0]["passed"] and d["rejects"] == ["a wrong variant"] and d["seeds"] == [1, 2]
    with pytest.raises(C.ClaimFailed, match=r"(?s)CLAIM P99 FAILED.*\[FAIL\] x: 0.5, required >= 1"):
        C.claim("P99", "a statement", [C.at_least("x", 0.5, 1.0)], seeds=[1], sizes={}, display=False)


def test_every_printed_line_fits_the_page():
    long = "word " * 80
    v = C.claim("P99", long, [C.within("a very long check name " * 5, np.linspace(0, 1, 50), -1, 2)],
                seeds=list(range(60)), sizes={"N": 1000, "horizons": [100, 300, 1000, 3000]}, status="holds in part",
                note=long, rejects=[long], display=False)
    assert all(len(line) <= C.WIDTH for line in v.text().splitlines())


def test_claim_prints_outside_a_notebook(capsys):
    C.claim("P99", "shown", [C.at_least("x", 2.0, 1.0)], seeds=[0], sizes={})
    assert capsys.readouterr().out.startswith("CLAIM P99 HOLDS: shown")


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(status="works"), ValueError, "status must be one of"),
    (dict(status="holds in part"), ValueError, "note must say"),
    (dict(checks=[]), TypeError, "checks"),
    (dict(checks=[3]), TypeError, "checks"),
    (dict(sizes=[1]), TypeError, "sizes"),
])
def test_claim_bad_input(kwargs, err, match):
    args = dict(paper="P99", statement="s", checks=[C.at_least("x", 2.0, 1.0)], seeds=[0], sizes={}, display=False)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        C.claim(**args)


@pytest.mark.parametrize("make, err, match", [
    (lambda: C.Check("x", [1.0]), ValueError, "needs low, high"),
    (lambda: C.within("x", [np.nan], 0, 1), ValueError, "finite"),
    (lambda: C.within("x", "abc", 0, 1), TypeError, "numbers"),
    (lambda: C.within("x", 1.0, 2, 1), ValueError, "low=2"),
    (lambda: C.within("", 1.0, 0, 1), TypeError, "name"),
])
def test_check_bad_input(make, err, match):
    with pytest.raises(err, match=match):
        make()
