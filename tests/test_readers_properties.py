"""Property tests of the readers of what strangers send: whatever the bytes, each reader returns a value
or refuses with its own error (a 400 or a rejected row), never anything else (a 500)."""

from __future__ import annotations

import json
import string
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.usage import intake
from sync.webhooks import kommo, values, zuora

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
form_key = st.sampled_from(["leads", "contacts", "account", "x"]).flatmap(
    lambda entity: st.lists(
        st.sampled_from(["status", "add", "update", "delete", "note", "0", "id", "status_id", "[", "]", "%5B"]),
        max_size=5,
    ).map(lambda parts: entity + "".join(f"[{p}]" for p in parts))
)
form_value = st.text(alphabet=string.printable + "²①\x00é%", max_size=30)


@FAST
@given(st.binary(max_size=2000))
def test_any_bytes_are_a_kommo_web_hook_or_a_refusal(body):
    try:
        kommo.parse(body)
    except kommo.NotKommoFormat:
        pass


@FAST
@given(st.lists(st.tuples(form_key, form_value), max_size=12))
def test_any_form_fields_are_a_kommo_web_hook_or_a_refusal(fields):
    body = "&".join(f"{key}={value}" for key, value in fields).encode()
    try:
        _, events = kommo.parse(body)
    except kommo.NotKommoFormat:
        return
    for event in events:
        assert 0 < event.lead_id <= values.BIGINT_MAX


@FAST
@given(st.one_of(st.binary(max_size=1000), json_values.map(lambda v: json.dumps(v).encode())))
def test_any_body_is_a_callout_or_a_refusal(body):
    try:
        event = zuora.parse(body)
    except zuora.BadCallout:
        return
    values.check_tree(event.as_dict())


@FAST
@given(json_values, st.sampled_from(["application/json", "text/csv"]))
def test_any_usage_body_is_rows_or_a_refusal_and_any_row_is_a_record_or_its_reasons(value, content_type):
    body = json.dumps(value).encode() if content_type == "application/json" else str(value).encode()
    try:
        rows = intake.read_rows(body, content_type)
    except intake.BadFeed:
        return
    for row in rows:
        record, errors = intake.validate(row)
        assert (record is None) == bool(errors)
        if record is not None:
            assert Decimal(0) <= record.quantity < values.MAX_QUANTITY


@FAST
@given(st.text(max_size=40))
def test_a_quantity_is_stored_exactly_or_refused(text):
    try:
        number = values.quantity(text)
    except values.Refused:
        return
    six = Decimal("0.000001")
    # What SQLite keeps (a double) reads back as the same amount, to the model's 6 decimal places.
    assert Decimal(float(number)).quantize(six) == number.quantize(six)


@FAST
@given(
    st.tuples(
        st.just(1),
        st.text(max_size=20),
        st.text(max_size=20),
        st.decimals(min_value=0, max_value=10**12, places=6, allow_nan=False, allow_infinity=False),
        st.dates(),
        st.none() | st.dates(),
        st.text(max_size=20),
        st.text(max_size=40),
        st.text(max_size=30),
    )
)
def test_a_usage_lines_size_is_counted_exactly_without_writing_it(row):
    """Batches are cut at 4 MB by counting each line's bytes; the count must be the written line's size."""
    from sync.usage.batches import LineWriter, line_size

    assert line_size(row) == len(LineWriter().line(row).encode())
