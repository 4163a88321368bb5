"""The local model must run on any x86-64 CPU of the last decade, not only on the machine that compiled it."""

import re
import signal
import subprocess
import sys
from pathlib import Path

import llama_cpp
import pytest

from judging.management.commands.run_embedded import exit_reason

LIB_DIR = Path(llama_cpp.__file__).parent / "lib"
# Instructions beyond the x86-64-v3 baseline (AVX2/FMA/F16C): AVX-512 uses zmm registers or opmask registers
# (k0-k7, also with ymm under AVX512VL), AMX its tile instructions. Any of them means a native build.
BEYOND_BASELINE = re.compile(r"%zmm\d|%k[0-7]\b|\b(ldtilecfg|tileloadd|tileloaddt1|tdpb\w*|tilestored|tilezero)\b")


@pytest.mark.parametrize("library", sorted(p.name for p in LIB_DIR.glob("lib*.so")))
def test_the_built_library_has_no_instructions_beyond_the_baseline(library):
    disassembly = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(LIB_DIR / library)], capture_output=True, text=True, check=True
    ).stdout
    found = sorted(set(BEYOND_BASELINE.findall(disassembly)))
    assert not found, f"{library} was built for a newer CPU than x86-64-v3 (found {found[:10]}); see the Makefile"


def test_the_ggml_cpu_backend_uses_avx2():
    """The portable build is not the slowest one either: the baseline's vector instructions are there."""
    disassembly = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(LIB_DIR / "libggml-cpu.so")], capture_output=True, text=True,
        check=True,
    ).stdout
    assert "vfmadd" in disassembly and "%ymm" in disassembly


def test_a_crash_on_an_illegal_instruction_says_what_happened_and_the_fix(tmp_path):
    crashed = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"])
    assert crashed.returncode == -signal.SIGILL
    message = exit_reason("local-model", crashed.returncode, tmp_path)
    assert "SIGILL" in message and "make run" in message and "\n" not in message
