"""Scores and features as the online store holds them: read per request, never recomputed.

The `score` flow materialises each model's latest list to the Feast online store (view
`<model>_scores`); `materialize` loads the feature families. An offer reads three fields of one
shopper's score, an item check one feature: only what the decision needs, since the cost of an
online read grows with the features asked for.
"""

from __future__ import annotations

import datetime as dt
import re

from cadence.features.feature_repo.definitions import scores_view_name
from cadence.serving._rules import Score

_PROBABILITY = re.compile(r"p_order_\d+d")
_CATEGORY_VIEW = "categories"


class ScoresMissing(LookupError):
    """The online store holds no scores for the model: nothing was scored and published."""


class OnlineScores:
    """One model's latest scores (and the per-category order counts) from a Feast store."""

    def __init__(self, store, model: str) -> None:
        self.store = store
        view_name = scores_view_name(model)
        try:
            view = store.get_feature_view(view_name)
        except Exception as exc:  # Feast raises its own not-found error per registry kind
            raise ScoresMissing(
                f"the online store has no scores view {view_name!r}: run `cadence score` "
                f"(or the pipeline) for {model} first"
            ) from exc
        names = [f.name for f in view.features]
        probability = next(n for n in names if _PROBABILITY.fullmatch(n))
        self._fields = (probability, "expected_next_order_date", "model_version")
        self._refs = [f"{view_name}:{n}" for n in self._fields]
        try:
            categories = store.get_feature_view(_CATEGORY_VIEW)
            self._category_features = {f.name for f in categories.features}
        except Exception:  # data without categories (an order log alone) has no such view
            self._category_features = set()
        # Feast works out its online store's capabilities on the first read (trying imports
        # of optional stores); done here, concurrent first requests do not queue on it.
        self.ping()

    def score(self, user_id: str) -> Score | None:
        """The shopper's latest score, or None when they are not on the list."""
        row = self.store.get_online_features(
            features=self._refs, entity_rows=[{"user_id": user_id}]
        ).to_dict()
        probability, expected, version = (row[f][0] for f in self._fields)
        if probability is None:
            return None
        if isinstance(expected, dt.datetime):
            expected = expected.date()
        return Score(
            probability=float(probability),
            expected_next_order=expected,
            model_version=str(version or ""),
        )

    def usual_orders(self, user_id: str, category: str | None) -> int | None:
        """How often the shopper ordered `category` in the last 365 days; None when the store
        has no such feature (no categories in the data, or an unknown category)."""
        name = f"{category}_orders_365d"
        if category is None or name not in self._category_features:
            return None
        row = self.store.get_online_features(
            features=[f"{_CATEGORY_VIEW}:{name}"], entity_rows=[{"user_id": user_id}]
        ).to_dict()
        value = row[name][0]
        return 0 if value is None else int(value)

    def ping(self) -> None:
        """Raises when the online store cannot be read."""
        self.store.get_online_features(features=self._refs[:1], entity_rows=[{"user_id": ""}])
