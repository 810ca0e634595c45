import pytest
from intentloop.envs.intents import DIRECTIONS, DONE, SKILL_SIGNATURES, Intent, InvalidIntent, parse_intent
from intentloop.envs.scene import BLOCKS, ZONES


@pytest.mark.parametrize(
    "text",
    [
        "pick(red_block)",
        "place(red_block, blue_zone)",
        "place(green_block, red_block)",
        "push(yellow_block, left)",
        "done()",
    ],
)
def test_canonical_text_round_trips(text):
    intent = parse_intent(text, BLOCKS, ZONES)
    assert str(intent) == text
    assert parse_intent(str(intent)) == intent


def test_parser_tolerates_spacing_but_prints_canonical_form():
    assert str(parse_intent("  place( red_block ,blue_zone )  ")) == "place(red_block, blue_zone)"


def test_vocabulary_covers_the_issue():
    assert {"pick", "place", "push", "done"} <= set(SKILL_SIGNATURES)
    assert parse_intent("done()") == DONE and DONE.is_done
    assert {"left", "right", "forward", "backward"} <= set(DIRECTIONS)


@pytest.mark.parametrize(
    ("text", "bad_token"),
    [
        ("fly(red_block)", "'fly'"),
        ("pick(red_block, blue_zone)", "pick takes 1 argument"),
        ("place(red_block)", "place takes 2 arguments"),
        ("pick(pink_block)", "'pink_block'"),
        ("pick(blue_zone)", "is a zone, not a block"),
        ("place(red_block, moon)", "'moon'"),
        ("push(red_block, up)", "'up'"),
        ("place(red_block, red_block)", "on itself"),
        ("pick red_block", "malformed"),
        ("pick(red_block,)", "empty argument"),
        ("", "malformed"),
    ],
)
def test_invalid_intents_name_the_bad_token(text, bad_token):
    with pytest.raises(InvalidIntent) as err:
        parse_intent(text, BLOCKS, ZONES)
    assert bad_token in str(err.value)
    assert "\n" not in str(err.value)


def test_non_string_is_rejected():
    with pytest.raises(InvalidIntent, match="must be a string"):
        parse_intent(Intent("pick", ("red_block",)))  # type: ignore[arg-type]
