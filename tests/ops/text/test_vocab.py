"""Vocab files: read as tokenizers reads them, found by path or pkg://, cached and reloaded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from tokenizers import BertWordPieceTokenizer

from twinpipe.ops import ParamError
from twinpipe.ops.text import detokenize, load_vocab, resolve_vocab, tokenize


def test_odd_vocab_files_are_read_as_tokenizers_reads_them(tmp_path: Path) -> None:
    # CRLF lines, trailing White_Space (including U+3000), a blank line, a duplicate (the later id
    # wins, the earlier id names no token), a token that is only the prefix, no final newline
    lines = ["[PAD]", "[UNK]\r", "[CLS]", "[SEP]  ", "hello", "", "##lo", "he", "hello\u3000", "##", "##l", "w", "##orld\t", "[MASK]"]
    path = tmp_path / "odd.txt"
    path.write_bytes("\n".join(lines).encode())
    peer = BertWordPieceTokenizer(str(path))
    peer.enable_padding(length=12)
    assert load_vocab(str(path)).ids == peer.get_vocab()
    texts = ["hello world", "hel lo", "world hello [MASK]", "helo"]
    out = tokenize([t.encode() for t in texts], vocab=str(path), max_length=12)
    np.testing.assert_array_equal(np.stack(out.input_ids), [e.ids for e in peer.encode_batch(texts)])
    ids = np.arange(-1, len(lines) + 2)
    for skip in (True, False):
        got = detokenize(ids, vocab=str(path), skip_special_tokens=skip)
        assert got.item().decode() == peer.decode([int(i) for i in ids if i >= 0], skip_special_tokens=skip)


def test_bad_vocab_files_are_param_errors(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"[PAD]\n[UNK]\n[CLS]\n[SEP]\ncaf\xe9\n")
    with pytest.raises(ParamError, match=r"text.tokenize: parameter 'vocab': vocab file .*latin1.txt is not valid UTF-8 \(line 5\)"):
        tokenize.bind(vocab=str(bad))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ParamError, match="is empty"):
        tokenize.bind(vocab=str(empty))
    with pytest.raises(ParamError, match="text.detokenize: .*no vocab file"):
        detokenize.bind(vocab=str(tmp_path / "missing.txt"))
    with pytest.raises(ParamError, match="cannot import package 'no_such_package_xyz'"):
        tokenize.bind(vocab="pkg://no_such_package_xyz/vocab.txt")
    with pytest.raises(ParamError, match="expected pkg://<package>/<path"):
        tokenize.bind(vocab="pkg://twinpipe.pipelines")
    with pytest.raises(ParamError, match="expected a vocab file"):
        tokenize.bind(vocab=3)


def test_vocab_is_found_by_path_relative_path_and_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vocab_file: Path) -> None:
    shipped = resolve_vocab("pkg://twinpipe.pipelines/assets/wordpiece_cldr.txt")
    assert shipped == vocab_file.absolute()
    (tmp_path / "v.txt").write_bytes(vocab_file.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert resolve_vocab("v.txt") == tmp_path / "v.txt"
    a = tokenize(b"Hello world", vocab="v.txt", max_length=16).input_ids
    b = tokenize(b"Hello world", vocab="pkg://twinpipe.pipelines/assets/wordpiece_cldr.txt", max_length=16).input_ids
    np.testing.assert_array_equal(a, b)


def test_loaded_vocab_is_cached_and_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "v.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nab\n")
    first = load_vocab(str(path))
    assert load_vocab(str(path)) is first
    assert tokenize(b"ab", vocab=str(path), max_length=4).input_ids.tolist() == [2, 4, 3, 0]
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nx\nab\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_vocab(str(path)) is not first
    assert tokenize(b"ab", vocab=str(path), max_length=4).input_ids.tolist() == [2, 5, 3, 0]
