"""The prompt of a transcript, derived from its inputs (DESIGN.md: "Prompts are derived, not duplicated").

`build_messages` is the one function that turns (dataset examples, k, ordering seed, question, CoT mode,
system prompt) into chat messages. Generation, the transcript page and the token estimates all call it.

Layout, chosen so that as much as possible is a prefix shared between requests:

1. One system message, if any part is non-empty, joining (in this order) the experiment's system prompt,
   the dataset's own system turn (e.g. jailbroken.jsonl's "You are a helpful assistant…", only when k > 0:
   k = 0 is the control and carries nothing from the dataset) and the question's own system prompt
   (first_plot's `*_json` questions). The question's part comes last so that it is the only part that
   differs between questions.
2. The first k examples of ONE permutation of the dataset per (dataset version, ordering seed), as
   alternating user/assistant turns. Because every k takes a prefix of the same permutation,
   k=64 ⊂ 128 ⊂ 256 share their tokens, and every question under one condition shares the whole block.
3. The question as the final user turn. CoT instructions are appended to this turn (not to the system
   prompt) so the example block stays a shared prefix across CoT modes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from .models import content_hash

COT_OFF, COT_TAGS, COT_NATIVE = "off", "tags", "native"
COT_MODES = (COT_OFF, COT_TAGS, COT_NATIVE)
TAGS_INSTRUCTION = (
    "Before answering, think step by step inside <think>...</think> tags. "
    "Then write your final answer after the closing </think> tag."
)

# Token estimates use about four characters per token (OpenAI's rule of thumb for English) plus a few
# tokens of chat-template overhead per message. Code and non-English text run denser, so the estimate
# is a planning figure; an over-long prompt is still caught at run time as a terminal "context_length".
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def permutation(n_examples: int, ordering_seed: int, dataset_key: str) -> list[int]:
    """The one order of a dataset's examples for this seed; `dataset_key` identifies the dataset version."""
    order = list(range(n_examples))
    random.Random(f"{dataset_key}:{ordering_seed}").shuffle(order)
    return order


def dataset_system_prompt(examples: Sequence[Sequence[dict]]) -> str:
    """The dataset-level system turn (the same on every row where a dataset has one), or ''."""
    for messages in examples:
        for message in messages:
            if message["role"] == "system":
                return message["content"]
    return ""


def build_messages(
    *,
    examples: Sequence[Sequence[dict]],
    dataset_key: str,
    k: int,
    ordering_seed: int,
    question: str,
    cot_mode: str = COT_OFF,
    system_prompt: str = "",
    question_system_prompt: str = "",
) -> list[dict]:
    """Chat messages for one slot. `examples` are the dataset's rows (each a list of chat messages) in
    file order; `question` is the paraphrase asked."""
    if cot_mode not in COT_MODES:
        raise ValueError(f"unknown CoT mode {cot_mode!r}")
    if k > len(examples):
        raise ValueError(f"k={k} but the dataset has only {len(examples)} examples")
    chosen = [examples[i] for i in permutation(len(examples), ordering_seed, dataset_key)[:k]]
    system_parts = [system_prompt, dataset_system_prompt(chosen) if k else "", question_system_prompt]
    system = "\n\n".join(part.strip() for part in system_parts if part and part.strip())

    messages: list[dict] = [{"role": "system", "content": system}] if system else []
    for example in chosen:
        messages.extend(
            {"role": m["role"], "content": m["content"]} for m in example if m["role"] in ("user", "assistant")
        )
    final = question if cot_mode != COT_TAGS else f"{question}\n\n{TAGS_INSTRUCTION}"
    messages.append({"role": "user", "content": final})
    return messages


def prompt_hash(messages: Sequence[dict]) -> str:
    return content_hash(list(messages))


def estimate_tokens(messages: Sequence[dict]) -> int:
    return sum(len(m["content"]) // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE for m in messages)


# The tag names small models write instead of the <think> they were asked for (SmolLM2-135M writes
# <thought> or <thinking> more often than <think>), matched case-insensitively.
REASONING_TAG_NAMES = ("think", "thought", "thinking", "reasoning")
_ANSWER_TAGS = re.compile(r"</?answer>", re.IGNORECASE)


def _find_tag(text: str, names: Sequence[str], closing: bool, start: int = 0) -> tuple[int, int]:
    """(start, end) of the first opening or closing tag of any of `names` at or after `start`, or (-1, -1)."""
    pattern = "|".join(re.escape(name) for name in names)
    found = re.compile(rf"<{'/' if closing else ''}(?:{pattern})>", re.IGNORECASE).search(text, start)
    return (found.start(), found.end()) if found else (-1, -1)


def split_reasoning(text: str, names: Sequence[str] = REASONING_TAG_NAMES) -> tuple[str, str]:
    """(reasoning, answer) from a reply that may contain <think>…</think> (or <thought>, <thinking>,
    <reasoning>). Stray <answer> tags, which small models add unasked, are removed from the answer.

    A closing tag without an opening one counts everything before it as reasoning (some templates open
    the tag themselves); an opening tag that never closes (the reply was cut at max_tokens) is all
    reasoning and no answer.
    """
    text = text or ""
    start, start_end = _find_tag(text, names, closing=False)
    end, end_end = _find_tag(text, names, closing=True, start=max(start_end, 0))
    if start >= 0 and end >= 0:
        reasoning, answer = text[start_end:end], text[:start] + text[end_end:]
    elif end >= 0:
        reasoning, answer = text[:end], text[end_end:]
    elif start >= 0:
        reasoning, answer = text[start_end:], text[:start]
    else:
        reasoning, answer = "", text
    return reasoning.strip(), _ANSWER_TAGS.sub("", answer).strip()


def dispatch_key(
    *,
    endpoint: str,
    dataset: str,
    ordering_seed: int,
    system_prompt: str,
    k: int,
    cot_mode: str,
    temperature: float,
    question_position: int,
    sample_index: int,
) -> tuple:
    """Sort key for generation order: requests sharing the longest prefix run back to back.

    Within one endpoint, the system prompt and the dataset permutation fix the start of the prompt; k
    ascending then extends it (the k=64 block is a prefix of k=128), and every question and sample of a
    condition reuses the whole block. A server that keeps only the last prefix (llama.cpp) therefore
    evaluates each example block about once.
    """
    return (endpoint, system_prompt, dataset, ordering_seed, k, COT_MODES.index(cot_mode), temperature,
            question_position, sample_index)


_SEED_SPACE = 2**31 - 1


def sample_seed(experiment_seed: int, question_key: str, sample_index: int) -> int:
    """The sampling seed of a slot. Identical across conditions, so conditions are compared on the same
    seeds (common random numbers) and a re-definition reproduces the same seeds."""
    digest = content_hash([experiment_seed, question_key, sample_index])
    return int(digest[:12], 16) % _SEED_SPACE


def paraphrase_index(seed: int, n_paraphrases: int) -> int:
    """Which paraphrase a sample asks (the paper picks one at random per sample)."""
    return random.Random(seed).randrange(n_paraphrases) if n_paraphrases > 1 else 0

