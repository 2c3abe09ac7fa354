"""Label matchers and fingerprints."""

from __future__ import annotations

import pytest

from alerts.services.matching import fingerprint, matchers_parse, matches
from core.errors import InvalidInput


def test_equal_labels_have_one_fingerprint_whatever_their_order():
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})


def test_matchers_support_equality_negation_and_regular_expressions():
    labels = {"target": "db1", "alertname": "Disk nearly full"}
    assert matches([{"name": "target", "op": "=", "value": "db1"}], labels)
    assert not matches([{"name": "target", "op": "!=", "value": "db1"}], labels)
    assert matches([{"name": "alertname", "op": "=~", "value": "Disk.*"}], labels)
    assert not matches([{"name": "alertname", "op": "!~", "value": "Disk.*"}], labels)
    assert matches([{"name": "missing", "op": "=", "value": ""}], labels)


def test_parsing_matchers_from_text_names_the_bad_part():
    assert matchers_parse("target=db1, alertname=~Disk.*") == [
        {"name": "target", "op": "=", "value": "db1"},
        {"name": "alertname", "op": "=~", "value": "Disk.*"},
    ]
    with pytest.raises(InvalidInput, match="not name=value"):
        matchers_parse("just words")
    with pytest.raises(InvalidInput, match="regular expression"):
        matchers_parse("target=~(")
