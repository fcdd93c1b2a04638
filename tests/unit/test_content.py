"""Reading stored values back (queue/content.py): the fast path gives what json.loads gives."""
import json

import pytest

from coffee_team.queue.content import MAX_CONTENT_DEPTH, encode_json, read_stored


@pytest.mark.parametrize("value", [None, 0, -3, 2.5, "x", "é\n", [], {}, [1, {"a": [None]}],
                                   {"k": {"n": [1, 2.5, True, False, "s"]}}])
def test_a_stored_value_reads_back_as_json_loads_reads_it(value):
    text = encode_json(value, "content")
    assert read_stored(text) == (json.loads(text), True) == (value, True)


@pytest.mark.parametrize("text", [" 1", "1 ", '\n{"a": 1}\t', "NaN", "[1, 2]"])
def test_texts_an_older_version_stored_read_as_json_loads_reads_them(text):
    """Whitespace around the value goes through json.loads itself."""
    value, readable = read_stored(text)
    assert readable and json.dumps(value) == json.dumps(json.loads(text))


@pytest.mark.parametrize("text", ["", "x", "[1,", "1 2", "{'a': 1}"])
def test_what_is_not_json_raises_json_loads_error(text):
    with pytest.raises(json.JSONDecodeError) as ours:
        read_stored(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_a_value_nested_too_deep_is_unreadable():
    assert read_stored("[" * (MAX_CONTENT_DEPTH + 1) + "]" * (MAX_CONTENT_DEPTH + 1)) == (
        None, False)
    assert read_stored("[" * 5000 + "]" * 5000) == (None, False)  # deeper than the recursion
