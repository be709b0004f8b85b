"""Tools in the prompt (Hermes/Qwen style) and calls read back from the output."""

from __future__ import annotations

import json

import pytest

from parley.core.generation import (
    GenerationRequest,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Turn,
)
from parley.engines.chat_template import ChatTemplate
from parley.engines.hermes import CallSplitter, CallStartOut, InputOut, SplitEvent, TextOut
from tests.engines.test_chat_template import SMOLLM2_TEMPLATE

# The tool part of Qwen2.5's template, in short: tools in the system turn, calls as
# <tool_call> JSON, results as role "tool" wrapped in <tool_response>.
QWEN_LIKE = (
    "{%- if tools %}<|im_start|>system\n{{ messages[0]['content'] if messages[0]['role'] == "
    "'system' else 'You are Qwen.' }}\n\n# Tools\n<tools>{% for t in tools %}\n{{ t | tojson }}"
    "{% endfor %}\n</tools>{{ '<|im_end|>\n' }}{%- endif %}"
    "{%- for m in messages %}{%- if m.role == 'system' and tools %}"
    "{%- elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n"
    "</tool_response>{{ '<|im_end|>\n' }}"
    "{%- elif m.tool_calls %}<|im_start|>assistant\n{{ m.content }}{% for c in m.tool_calls %}"
    '\n<tool_call>\n{"name": "{{ c.function.name }}", "arguments": '
    "{{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}{{ '<|im_end|>\n' }}"
    "{%- else %}<|im_start|>{{ m.role }}\n{{ m.content }}{{ '<|im_end|>\n' }}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}"
)

WEATHER = ToolSpec(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def conversation(choice: ToolChoice | None = None) -> GenerationRequest:
    return GenerationRequest(
        model="m",
        system="Be brief.",
        turns=(
            Turn.of("user", "Weather in Oslo?"),
            Turn.of("assistant", "Checking.", ToolCall("toolu_1", "get_weather", {"city": "Oslo"})),
            Turn.of(
                "user",
                ToolResult("toolu_1", "get_weather", (TextPart("-3 C"),)),
                "And tomorrow?",
            ),
        ),
        max_tokens=10,
        tools=(WEATHER,),
        tool_choice=choice or ToolChoice(),
    )


def test_template_without_tool_support_gets_the_hermes_text() -> None:
    template = ChatTemplate(SMOLLM2_TEMPLATE, "", "")
    assert not template.native_tools
    text = template.render(conversation())
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n\n")
    assert "You are a helpful AI assistant named SmolLM" not in text
    signature = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": WEATHER.input_schema,
        },
    }
    assert f"<tools>\n{json.dumps(signature)}\n</tools>" in text
    assert (
        "<|im_start|>assistant\nChecking.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n'
    ) in text
    assert (
        "<|im_start|>user\n<tool_response>\n-3 C\n</tool_response>\nAnd tomorrow?<|im_end|>\n"
    ) in text
    assert text.endswith("<|im_start|>assistant\n")


def test_template_with_tool_support_renders_them_itself() -> None:
    template = ChatTemplate(QWEN_LIKE, "", "")
    assert template.native_tools
    text = template.render(conversation(ToolChoice("tool", "get_weather")))
    assert text.startswith(
        "<|im_start|>system\nBe brief.\n\nYou must call the function get_weather."
    )
    assert '"name": "get_weather"' in text.split("</tools>")[0]
    assert "# Tools\n\nYou may call" not in text  # ours is not added as well
    assert (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>' in text
    )
    assert "<tool_response>\n-3 C\n</tool_response>" in text
    assert "</tool_response><|im_end|>\n<|im_start|>user\nAnd tomorrow?<|im_end|>" in text


@pytest.mark.parametrize("native", [False, True])
def test_forced_call_opens_the_call_in_the_prompt(native: bool) -> None:
    template = ChatTemplate(QWEN_LIKE if native else SMOLLM2_TEMPLATE, "", "")
    text = template.render(conversation(ToolChoice("any")), open_call=True)
    assert text.endswith("<|im_start|>assistant\n<tool_call>\n")


def test_error_results_say_so() -> None:
    request = conversation()
    turns = (
        *request.turns[:2],
        Turn.of("user", ToolResult("toolu_1", "get_weather", (TextPart("no such city"),), True)),
    )
    text = ChatTemplate(SMOLLM2_TEMPLATE, "", "").render(
        GenerationRequest(model="m", system=None, turns=turns, max_tokens=5, tools=(WEATHER,))
    )
    assert "<tool_response>\nError: no such city\n</tool_response>" in text


def feed(splitter: CallSplitter, *pieces: str) -> list[SplitEvent]:
    out: list[SplitEvent] = []
    for piece in pieces:
        out += splitter.feed(piece)
    return out + splitter.finish()


def joined_input(events: list[SplitEvent]) -> str:
    return "".join(e.partial_json for e in events if isinstance(e, InputOut))


def test_a_call_is_read_back_as_name_and_streamed_input() -> None:
    events = feed(
        CallSplitter(forced=False),
        "<",
        "tool",
        "_call>\n",
        '{"name": "',
        "get_weather",
        '", "arguments": ',
        '{"city',
        '": "Os',
        'lo"} ',
        "}",
    )
    assert events[0] == CallStartOut("get_weather")
    assert json.loads(joined_input(events)) == {"city": "Oslo"}
    assert joined_input(events) == '{"city": "Oslo"}'
    assert len([e for e in events if isinstance(e, InputOut)]) >= 3


def test_closing_braces_inside_the_input_are_kept() -> None:
    events = feed(
        CallSplitter(forced=True),
        '{"name": "t", "arguments": {"a": {"b": [1]}, "s": "x}"',
        "}",
        "}",
    )
    assert json.loads(joined_input(events)) == {"a": {"b": [1]}, "s": "x}"}


def test_a_cut_off_call_passes_on_what_it_has() -> None:
    events = feed(CallSplitter(forced=True), '{"name": "t", "arguments": {"a": {"b": 1}')
    assert joined_input(events) == '{"a": {"b": 1}'


@pytest.mark.parametrize("reply", ["Hello there", "<b>bold</b>", "<tool", "<tool_cal"])
def test_text_that_does_not_start_a_call_stays_text(reply: str) -> None:
    events = feed(CallSplitter(forced=False), *reply)
    assert events
    assert all(isinstance(e, TextOut) for e in events)
    assert "".join(e.text for e in events if isinstance(e, TextOut)) == reply
