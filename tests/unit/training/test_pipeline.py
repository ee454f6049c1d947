"""Which networks a training run trains: one, or an ensemble's members."""

from __future__ import annotations

import pytest

from training.config import load_config
from training.pipeline import member_configs


def test_member_configs_gives_each_member_the_next_seed() -> None:
    config = load_config(None, ["ensemble=3", "seed=7", "epochs=2"])
    members = member_configs(config)
    assert [m.seed for m in members] == [7, 8, 9] and all(m.epochs == 2 for m in members)
    assert member_configs(load_config(None, [])) == [load_config(None, [])]


@pytest.mark.parametrize(("overrides", "message"), [
    (["ensemble=0"], "ensemble must be 1 or more"),
    (["ensemble=2", "resume=runs/x"], "resume continues one run"),
])
def test_member_configs_refuses_what_it_cannot_train(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        member_configs(load_config(None, overrides))
