"""Did-you-mean hints computed against the right level of the spec (issue 23, item 5): a key given
at the wrong level points to where it belongs; a misspelling points to the nearest name."""

import pytest

from bandit_lab import schema
from bandit_lab.errors import BanditError

BASE = {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "loss": "dpo"}


def _error(spec: dict) -> str:
    with pytest.raises(BanditError) as e:
        schema.parse(spec, "spec.json")
    return str(e.value)


@pytest.mark.parametrize("extra, hint", [
    ({"beta": 1.0}, "beta: unknown spec key; did you mean 'loss_params.beta'?"),          # was: 'data'
    ({"steps": 100}, "steps: unknown spec key; did you mean 'optimizer.steps'?"),          # was: no hint
    ({"lr": 0.1}, "lr: unknown spec key; did you mean 'optimizer.lr'?"),
    ({"step": 100}, "step: unknown spec key; did you mean 'optimizer.steps'?"),
    ({"wieght_decay": 0.1}, "wieght_decay: unknown spec key; did you mean 'weight_decay'?"),
    ({"optimizer": {"weight_decay": 0.1}}, "optimizer.weight_decay: unknown key; did you mean the top-level 'weight_decay'?"),
    ({"loss_params": {"weight_decay": 0.1}}, "did you mean the top-level 'weight_decay'?"),
    ({"preference": {"pistar": [0.6, 0.3, 0.1]}}, "preference.pistar: unknown key; did you mean 'pi_star'?"),
    ({"loss": "ipo", "loss_params": {"betta": 1.0}}, "has no parameter 'betta'; did you mean 'beta'?"),
])
def test_hint_points_to_the_right_level(extra, hint):
    assert hint in _error({**BASE, **extra})


def test_pi_star_at_the_top_level_points_into_preference():
    spec = {k: v for k, v in BASE.items() if k != "preference"} | {"pi_star": [0.6, 0.3, 0.1]}
    msg = _error(spec)
    assert "pi_star: unknown spec key; did you mean 'preference.pi_star'?" in msg  # was: 'pi_ref'
    assert "pi_ref'?" not in msg


def test_a_parameter_of_the_chosen_loss_points_into_loss_params():
    msg = _error({**BASE, "loss": "cdpo", "label_smoothing": 0.2})
    assert "label_smoothing: unknown spec key; did you mean 'loss_params.label_smoothing'?" in msg


def test_json_with_comments_says_why_and_points_to_toml(tmp_path):
    from bandit_lab import spec

    p = tmp_path / "s.json"
    p.write_text('{"pi_ref": [0.4, 0.4, 0.2],  // the reference\n "url": "http://x", "preference": {"pi_star": [0.6, 0.3, 0.1]}}')
    with pytest.raises(BanditError, match=r"JSON allows no comments .* TOML"):
        spec.read(str(p))
    p.write_text('{"description": "see http://x", "pi_ref": [0.4, 0.4, 0.2],}')  # a // inside a string is no comment
    with pytest.raises(BanditError) as e:
        spec.read(str(p))
    assert "allows no comments" not in str(e.value)


def test_the_annotated_toml_example_is_a_valid_spec():
    from bandit_lab import spec

    s = schema.parse(spec.read("examples/annotated.toml"))
    assert s.loss == "dpo" and s.weight_decay == 0.1 and s.optimizer.steps == 3000
