"""Per-feature attributions of a LightGBM model's score along each row's decision paths.

Every split a row passes moves its running value from the node's value to the child's; that move
is credited to the split's feature (Saabas' attribution). The root values summed over the trees
are the bias, so a row's attributions plus the bias are exactly its raw score, as with SHAP
values (`pred_contrib`). They differ from SHAP in sharing: a feature is credited where it is
split on, not averaged over every order of the features.

A path is fixed by the leaf it ends in, so each leaf's attributions are summed once, when the
model is loaded; a row then costs a gather from its leaves (LightGBM's own split decisions,
missing values included, from one `pred_leaf` call). TreeSHAP costs about 0.1 ms a row, which
for a page of 10 was a third of the ranking stage's budget.

The same leaves give the score: the sum of each tree's leaf value (`leaf_values`), which is what
`Booster.predict` computes. So one `pred_leaf` call over all candidates scores them and explains
any page of them (a second `predict` call cost as much again, 0.35 ms at 150 candidates).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


class PathAttribution:
    """Each leaf's attributions, by tree; rows are attributed from their leaves."""

    def __init__(self, dump: dict[str, Any]):
        """From `Booster.dump_model()`."""
        self.n_features = int(dump["max_feature_idx"]) + 1
        trees = dump["tree_info"]
        width = max(int(t["num_leaves"]) for t in trees)
        # (trees, leaves, features + 1): a leaf's attributions, bias last; unused leaf slots stay 0.
        self.table = np.zeros((len(trees), width, self.n_features + 1))
        # (trees, leaves): each leaf's output, as LightGBM sums them into the raw score.
        self.leaf_values = np.zeros((len(trees), width))
        for t, tree in enumerate(trees):
            root = tree["tree_structure"]
            self.table[t, :, -1] = _value(root)
            self._walk(root, self.table[t], np.zeros(self.n_features), self.leaf_values[t])
        self._trees = np.arange(len(trees))

    def _walk(
        self,
        node: dict[str, Any],
        leaves: npt.NDArray[np.float64],
        path: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
    ) -> None:
        if "split_index" not in node:
            leaf = int(node.get("leaf_index", 0))
            leaves[leaf, :-1] = path
            values[leaf] = _value(node)
            return
        feature, here = int(node["split_feature"]), _value(node)
        for side in ("left_child", "right_child"):
            child = node[side]
            step = path.copy()
            step[feature] += _value(child) - here
            self._walk(child, leaves, step, values)

    def scores(self, leaves: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        """Raw model scores of rows from their leaves, (rows, trees) as `pred_leaf` gives them."""
        out: npt.NDArray[np.float64] = self.leaf_values[self._trees, leaves].sum(axis=1)
        return out

    def contributions(self, leaves: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        """(rows, features + 1): each feature's attribution, then the bias (last column)."""
        if not len(leaves):
            return np.zeros((0, self.n_features + 1))
        picked = self.table[self._trees, leaves]  # (rows, trees, features + 1)
        out: npt.NDArray[np.float64] = picked.sum(axis=1)
        return out


def _value(node: dict[str, Any]) -> float:
    return float(node["leaf_value"] if "split_index" not in node else node["internal_value"])
