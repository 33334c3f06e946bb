"""Text ops: BERT WordPiece tokenisation (pre-processing) and detokenisation (post-processing).

``text.tokenize(b"Hello world", vocab="vocab.txt", max_length=128)`` gives ``input_ids``,
``attention_mask`` and ``token_type_ids`` (int64, ``max_length`` long), the same ids as the
``tokenizers`` package's ``BertWordPieceTokenizer`` built from the same vocab file;
``text.tokenize_pair`` does sentence pairs and ``text.detokenize`` turns ids back into text.
Texts are BYTES tensors: UTF-8 ``bytes`` per sample.
"""

from ._detokenize import detokenize
from ._tokenize import tokenize, tokenize_pair
from ._vocab import Vocab, load_vocab, resolve_vocab

__all__ = ["Vocab", "detokenize", "load_vocab", "resolve_vocab", "tokenize", "tokenize_pair"]
