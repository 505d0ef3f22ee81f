"""The feature declarations: unique, documented, reading only contract columns, versioned."""

from __future__ import annotations

import dataclasses

import pytest

from data import schema
from features import registry
from features.registry import FEATURES, MAX_LOOKBACK, available, feature_set_version, select


def test_feature_names_are_unique():
    names = [f.name for f in FEATURES]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"declared twice: {duplicates}"
    assert set(registry.BY_NAME) == set(names)


def test_every_feature_has_a_description():
    missing = [f.name for f in FEATURES if not f.description.strip()]
    assert not missing, f"features without a description: {missing}"


def test_every_feature_reads_only_contract_columns():
    unknown = {
        f.name: [c for c in f.columns if c not in schema.BY_NAME]
        for f in FEATURES
        if any(c not in schema.BY_NAME for c in f.columns)
    }
    assert not unknown, f"features reading columns outside the contract: {unknown}"


def test_every_feature_declares_a_known_group_and_entity_column():
    assert {f.group for f in FEATURES} <= set(registry.GROUPS)
    for f in FEATURES:
        if f.entity != "payment":
            assert registry.ENTITY_COLUMN[f.entity] in f.columns, f.name


def test_windowed_features_have_a_window_and_row_features_none():
    for f in FEATURES:
        if f.aggregation == "row":
            assert f.window == 0, f.name
        else:
            assert f.window > 0, f.name


def test_only_label_features_read_labels():
    for f in FEATURES:
        reads = bool({"is_fraud", "label_time"} & set(f.columns))
        assert f.reads_labels == reads, f.name
        if f.reads_labels:
            assert f.label_delay > 0, f"{f.name} would see labels of its own window"


def test_max_lookback_covers_every_window_and_label_delay():
    assert max(f.window + f.label_delay for f in FEATURES) == MAX_LOOKBACK


def test_feature_set_version_is_stable_across_calls():
    first = feature_set_version()
    assert first == feature_set_version()
    assert first == feature_set_version(tuple(FEATURES))
    assert first.startswith("fs-")


@pytest.mark.parametrize(
    "change",
    [
        {"window": 2 * registry.DAY},
        {"name": "card_count_1d"},
        {"entity": "customer"},
        {"columns": ("card_id", "customer_id")},
        {"label_delay": 1},
        {"aggregation": "sum"},
    ],
)
def test_feature_set_version_changes_when_a_declaration_changes(change):
    i = next(k for k, f in enumerate(FEATURES) if f.name == "card_count_24h")
    changed = list(FEATURES)
    changed[i] = dataclasses.replace(FEATURES[i], **change)
    assert feature_set_version(changed) != feature_set_version(FEATURES)


def test_feature_set_version_ignores_description_wording():
    # descriptions are explanation text: rewording one must not invalidate trained models
    changed = [dataclasses.replace(f, description=f.description + " (reworded)") for f in FEATURES]
    assert feature_set_version(changed) == feature_set_version(FEATURES)


def test_feature_set_version_depends_on_the_feature_list():
    assert feature_set_version(FEATURES[:-1]) != feature_set_version(FEATURES)
    assert feature_set_version(FEATURES[::-1]) != feature_set_version(FEATURES)


def test_select_returns_declarations_in_the_requested_order():
    names = ["card_sum_7d", "log_amount", "merchant_fraud_rate_30d"]
    assert [f.name for f in select(names)] == names


@pytest.mark.parametrize("names", [["no_such_feature"], ["log_amount", "card_count_2h"]])
def test_select_raises_on_unknown_names(names):
    with pytest.raises(KeyError, match=names[-1]):
        select(names)


def test_available_with_all_contract_columns_keeps_every_feature():
    avail = available(schema.BY_NAME)
    assert avail.features == FEATURES
    assert avail.skipped == {}
    assert avail.skipped_groups() == {}


def test_available_reports_the_missing_columns_per_feature():
    avail = available([c for c in schema.BY_NAME if c != "device_id"])
    assert set(avail.skipped) == {f.name for f in FEATURES if "device_id" in f.columns}
    assert all(missing == ["device_id"] for missing in avail.skipped.values())
    assert "identity" in avail.skipped_groups()
    assert "device_id" in avail.skipped_groups()["identity"]


def test_the_entity_window_grids_are_complete():
    names = set(registry.BY_NAME)
    for entity in ("card", "customer"):
        for agg in ("count", "sum", "mean"):
            for w in ("1h", "24h", "7d", "30d"):
                assert f"{entity}_{agg}_{w}" in names
    for entity in ("merchant", "card", "customer", "category"):
        for w in ("1d", "7d", "30d"):
            rate, count = by_name(f"{entity}_fraud_rate_{w}"), by_name(f"{entity}_fraud_count_{w}")
            assert (rate.aggregation, count.aggregation) == ("label_rate", "label_count")
            assert rate.label_delay == count.label_delay == 7 * registry.DAY
            assert rate.window == count.window
    for entity in ("merchant", "category"):
        assert by_name(f"amount_to_{entity}_mean_30d").aggregation == "mean_ratio"
    for entity in ("card", "merchant"):
        assert by_name(f"days_since_{entity}_first_seen_30d").window == 30 * registry.DAY
    assert registry.ENTITY_COLUMN["category"] == "mcc"


def by_name(name: str) -> registry.Feature:
    return registry.BY_NAME[name]


def test_lookback_stays_the_longest_window_plus_the_label_delay():
    assert MAX_LOOKBACK == 37 * registry.DAY


def test_existing_feature_declarations_keep_their_names_and_windows():
    for name, window in (("card_count_1h", 3600), ("card_sum_24h", 86_400)):
        assert registry.BY_NAME[name].window == window
    rate = registry.BY_NAME["merchant_fraud_rate_30d"]
    assert (rate.window, rate.label_delay) == (30 * registry.DAY, 7 * registry.DAY)


def test_descriptions_format_with_a_value():
    """Every template renders in the explainer's words (its count and duration specs included):
    no brace left, no "(s)", never the name = value fallback."""
    from serving.scoring.explain import sentence

    facts = {c: "x" for c in schema.BY_NAME} | {"amount": 1.0, "city_population": 1e5}
    for f in FEATURES:
        for value in (0.0, 1.0, 3.0):
            text = sentence(f.name, value, facts)
            assert "{" not in text, f.name
            assert "(s)" not in text, f.name
            assert " = " not in text, (f.name, text)
            assert text == text.strip(), f.name
