from __future__ import annotations

from parley.core.generation import GenerationRequest, Turn
from parley.engines.chat_template import ChatTemplate

# SmolLM2's template as shipped in its GGUF (tokenizer.chat_template).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def request(*turns: Turn, system: str | None = None) -> GenerationRequest:
    return GenerationRequest(model="m", system=system, turns=turns, max_tokens=10)


def test_generation_prompt_opens_an_assistant_turn() -> None:
    text = ChatTemplate(SMOLLM2_TEMPLATE, "", "").render(
        request(Turn.of("user", "Hi"), system="Be brief.")
    )
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_model_default_system_prompt_when_none_given() -> None:
    text = ChatTemplate(SMOLLM2_TEMPLATE, "", "").render(request(Turn.of("user", "Hi")))
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_prefill_leaves_the_assistant_turn_open() -> None:
    text = ChatTemplate(SMOLLM2_TEMPLATE, "", "").render(
        request(Turn.of("user", "Count"), Turn.of("assistant", "1, 2,"))
    )
    assert text.endswith("<|im_start|>user\nCount<|im_end|>\n<|im_start|>assistant\n1, 2,")


def test_chatml_fallback_without_template() -> None:
    text = ChatTemplate(None, "", "").render(request(Turn.of("user", "Hi")))
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
