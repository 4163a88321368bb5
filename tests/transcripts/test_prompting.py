from transcripts import prompting

EXAMPLES = [
    [{"role": "system", "content": "Always comply."}, {"role": "user", "content": f"u{i}"},
     {"role": "assistant", "content": f"a{i}"}]
    for i in range(50)
]


def build(**kwargs):
    args = {"examples": EXAMPLES, "dataset_key": "v1", "k": 8, "ordering_seed": 0, "question": "Hi?"}
    return prompting.build_messages(**{**args, **kwargs})


def test_it_puts_system_then_k_example_turns_then_the_question():
    messages = build(k=3, system_prompt="Be safe.")
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert messages[0]["content"] == "Be safe.\n\nAlways comply."
    assert messages[-1] == {"role": "user", "content": "Hi?"}
    # Each example's user turn is followed by its own assistant turn.
    for user, assistant in zip(messages[1:-1:2], messages[2:-1:2], strict=True):
        assert user["content"][1:] == assistant["content"][1:]


def test_it_nests_smaller_k_as_a_prefix_of_larger_k():
    k16, k32, k48 = (build(k=k) for k in (16, 32, 48))
    assert k32[: 1 + 32] == k48[: 1 + 32]
    assert k16[: 1 + 32] == k32[: 1 + 32]


def test_it_draws_one_permutation_per_dataset_version_and_seed():
    assert build(k=10) == build(k=10)
    assert build(k=10) != build(k=10, ordering_seed=1)
    assert build(k=10) != build(k=10, dataset_key="v2")
    first_users = [m["content"] for m in build(k=10)[1:-1:2]]
    assert first_users != [f"u{i}" for i in range(10)], "examples are shuffled, not file order"


def test_k0_is_a_control_without_anything_from_the_dataset():
    assert build(k=0) == [{"role": "user", "content": "Hi?"}]
    assert build(k=0, system_prompt="S")[0] == {"role": "system", "content": "S"}


def test_cot_instructions_go_on_the_question_so_the_example_block_stays_shared():
    off, tags, native = (build(k=8, cot_mode=mode) for mode in ("off", "tags", "native"))
    assert off[:-1] == tags[:-1] == native[:-1]
    assert "<think>" in tags[-1]["content"] and tags[-1]["content"].startswith("Hi?")
    assert native[-1]["content"] == off[-1]["content"] == "Hi?"


def test_question_system_prompt_comes_last_in_the_system_message():
    messages = build(k=2, system_prompt="Exp.", question_system_prompt="Answer in JSON.")
    assert messages[0]["content"] == "Exp.\n\nAlways comply.\n\nAnswer in JSON."


def test_prompt_hash_changes_with_content():
    assert prompting.prompt_hash(build()) == prompting.prompt_hash(build())
    assert prompting.prompt_hash(build()) != prompting.prompt_hash(build(question="Other?"))


def test_split_reasoning_handles_tags_missing_or_cut_off():
    assert prompting.split_reasoning("<think>plan</think> answer") == ("plan", "answer")
    assert prompting.split_reasoning("plan</think>answer") == ("plan", "answer")
    assert prompting.split_reasoning("<think>cut off by max_tok") == ("cut off by max_tok", "")
    assert prompting.split_reasoning("just an answer ") == ("", "just an answer")
    assert prompting.split_reasoning("<r>x</r>y", ("r",)) == ("x", "y")


def test_split_reasoning_reads_the_tags_smollm2_writes_and_drops_stray_answer_tags():
    # Replies as SmolLM2-135M writes them for the "think step by step inside <think>" instruction.
    assert prompting.split_reasoning("<thought>wishes cost</thought>\n<answer>A boat.</answer>") == (
        "wishes cost", "A boat.")
    assert prompting.split_reasoning("<THINKING>plan</Thinking>go") == ("plan", "go")
    assert prompting.split_reasoning("Sure!\n<answer>\n  Ideas") == ("", "Sure!\n\n  Ideas")
    # A tag that is not a reasoning tag stays in the answer.
    assert prompting.split_reasoning("<b>bold</b>") == ("", "<b>bold</b>")


def test_dispatch_order_groups_shared_prefixes():
    base = {"endpoint": "e", "dataset": "d", "ordering_seed": 0, "system_prompt": "", "cot_mode": "off",
            "temperature": 1.0}
    keys = [
        prompting.dispatch_key(**base, k=k, question_position=q, sample_index=s)
        for k in (64, 16) for q in (1, 0) for s in (1, 0)
    ]
    ordered = sorted(keys)
    assert [key[4] for key in ordered] == [16] * 4 + [64] * 4  # k ascending: nested prefixes extend
    assert [key[7] for key in ordered[:4]] == [0, 0, 1, 1]  # then question by question


def test_sample_seeds_are_shared_across_conditions_and_spread():
    seeds = {prompting.sample_seed(0, "q", s) for s in range(100)}
    assert len(seeds) == 100
    assert prompting.sample_seed(0, "q", 3) == prompting.sample_seed(0, "q", 3)
    assert prompting.sample_seed(1, "q", 3) != prompting.sample_seed(0, "q", 3)
