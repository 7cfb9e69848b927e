"""Path attributions and leaf scores: each is a row's raw score, NaNs and zeros included."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from retrieval.ranking.attribution import PathAttribution

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 6))
    x[rng.random(x.shape) < 0.15] = np.nan  # a source that did not return a candidate: NaN
    y = np.nan_to_num(x[:, 0]) * 2 - np.nan_to_num(x[:, 3]) + (np.isnan(x[:, 1]) * 1.5)
    params = {"objective": "regression", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=40)


def _leaves(booster: lgb.Booster, rows: np.ndarray) -> np.ndarray:
    return np.asarray(booster.predict(rows, pred_leaf=True), dtype=np.intp).reshape(len(rows), -1)


def _rows(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(50, 6)) * 3
    rows[rng.random(rows.shape) < 0.2] = np.nan
    rows[rng.random(rows.shape) < 0.1] = 0.0
    return rows


def test_attributions_and_bias_sum_to_the_score(booster: lgb.Booster) -> None:
    paths = PathAttribution(booster.dump_model())
    rows = _rows(9)
    got = paths.contributions(_leaves(booster, rows))
    assert got.shape == (50, 7)
    np.testing.assert_allclose(got.sum(axis=1), booster.predict(rows), rtol=0, atol=1e-9)
    assert np.all(got[:, -1] == got[0, -1])  # the bias is the model's, the same for every row


def test_leaf_scores_are_the_models_predictions(booster: lgb.Booster) -> None:
    paths = PathAttribution(booster.dump_model())
    rows = _rows(11)
    scores = paths.scores(_leaves(booster, rows))
    np.testing.assert_allclose(scores, booster.predict(rows), rtol=0, atol=1e-9)
    assert len(set(np.round(scores, 6).tolist())) > 10  # the rows really differ


def test_the_feature_the_model_splits_on_is_credited(booster: lgb.Booster) -> None:
    paths = PathAttribution(booster.dump_model())
    rows = np.zeros((2, 6))
    rows[0, 0], rows[1, 0] = 3.0, -3.0  # only feature 0 differs between the two rows
    got = paths.contributions(_leaves(booster, rows))
    difference = got[0, :-1] - got[1, :-1]
    assert int(np.argmax(np.abs(difference))) == 0 and difference[0] > 0
    assert paths.contributions(np.zeros((0, 40), dtype=np.intp)).shape == (0, 7)
