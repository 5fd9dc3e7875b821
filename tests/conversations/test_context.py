"""What a model is sent: images count in the estimates, and merging turns keeps them."""

from conversations.context import PER_MESSAGE_OVERHEAD, message_tokens, trim_to_window
from providers.types import IMAGE_TOKENS, ChatMessage, ImagePart, join_turns

CAT = ImagePart("https://example.com/cat.png")
DOG = ImagePart("data:image/png;base64,AAAA", detail="low")


def test_an_image_counts_in_a_messages_estimate():
    assert message_tokens(ChatMessage("user", "abcd")) == 1 + PER_MESSAGE_OVERHEAD
    assert message_tokens(ChatMessage("user", "abcd", (CAT, DOG))) == 1 + 2 * IMAGE_TOKENS + PER_MESSAGE_OVERHEAD


def test_merged_turns_keep_every_image_in_order():
    merged = join_turns([ChatMessage("user", "first", (CAT,)), ChatMessage("user", "", (DOG,)), ChatMessage("assistant", "ok")])
    assert merged == [ChatMessage("user", "first", (CAT, DOG)), ChatMessage("assistant", "ok")]
    assert join_turns([ChatMessage("user", "a"), ChatMessage("user", "b")]) == [ChatMessage("user", "a\n\nb")]


def test_trimming_counts_images_so_an_old_picture_is_dropped_first():
    history = [ChatMessage("user", "look", (CAT,)), ChatMessage("assistant", "a cat"), ChatMessage("user", "and now?")]
    assert trim_to_window(history, system="", context_window=3 * IMAGE_TOKENS, max_output_tokens=100) == history
    assert trim_to_window(history, system="", context_window=IMAGE_TOKENS, max_output_tokens=100) == [history[-1]]


def test_tool_results_are_never_merged_and_tool_calls_count_in_the_estimate():
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    turns = [ChatMessage("assistant", "", tool_calls=(call,)), ChatMessage("tool", "18 C", tool_call_id="call_1"),
             ChatMessage("tool", "sunny", tool_call_id="call_2")]
    assert join_turns(turns) == turns
    assert message_tokens(turns[0]) == 0 + 7 + PER_MESSAGE_OVERHEAD  # "get_weather" + the arguments: 28 characters


def test_a_tool_result_whose_call_is_trimmed_away_goes_as_text():
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    history = [ChatMessage("user", "x" * 40_000), ChatMessage("assistant", "", tool_calls=(call,)),
               ChatMessage("tool", "y" * 4_000, tool_call_id="call_1")]
    kept = trim_to_window(history, system="", context_window=8_000, max_output_tokens=1_000)
    assert kept == [ChatMessage("user", "[tool result call_1]\n" + "y" * 4_000)]
    assert trim_to_window(history, system="", context_window=50_000, max_output_tokens=1_000) == history
